"""``cloudtrail:LookupEvents`` as AWS serves it: validation, opaque NextToken, and 2 requests/s per region.

Errors use the names in botocore's CloudTrail model (InvalidLookupAttributesException,
InvalidMaxResultsException, InvalidNextTokenException, InvalidTimeRangeException,
InvalidEventCategoryException); throttling is HTTP 400 ``ThrottlingException`` "Rate exceeded".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from rotator.sandbox.aws.cloudtrail import LOOKUP_ATTRIBUTES, LOOKUP_WINDOW_SECONDS, CloudTrailStore, parse_time

DEFAULT_LOOKUP_RATE = 2.0


class RateLimiter:
    """A token bucket per (account, region): ``rate`` tokens a second, holding at most ``max(rate, 1)``."""

    def __init__(self, rate: float = DEFAULT_LOOKUP_RATE) -> None:
        self._lock = threading.Lock()
        self._rate = rate
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    @property
    def rate(self) -> float:
        with self._lock:
            return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if value <= 0:
            raise ValueError("the LookupEvents rate must be > 0 requests/s (math.inf for no limit)")
        with self._lock:
            self._rate = value
            self._buckets.clear()

    def allow(self, account_id: str, region: str) -> bool:
        with self._lock:
            if math.isinf(self._rate):
                return True
            capacity = max(self._rate, 1.0)
            now = time.monotonic()
            tokens, last = self._buckets.get((account_id, region), (capacity, now))
            tokens = min(capacity, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[(account_id, region)] = (tokens, now)
                return False
            self._buckets[(account_id, region)] = (tokens - 1.0, now)
            return True


@dataclass(frozen=True)
class LookupAnswer:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> tuple[str, str] | None:
        if self.status < 300:
            return None
        return str(self.body.get("__type")), str(self.body.get("message", ""))


def _fail(code: str, message: str, status: int = 400) -> LookupAnswer:
    return LookupAnswer(status, {"__type": code, "message": message})


def _fingerprint(params: dict[str, Any]) -> str:
    # A token is only valid with the parameters that produced it (as AWS documents for NextToken).
    relevant = {k: params.get(k) for k in ("LookupAttributes", "StartTime", "EndTime", "EventCategory")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _encode_token(position: tuple[float, int], fingerprint: str) -> str:
    raw = json.dumps({"t": position[0], "s": position[1], "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: Any, fingerprint: str) -> tuple[float, int] | None:
    if not isinstance(token, str):
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(decoded, dict) or decoded.get("f") != fingerprint:
        return None
    at, seq = decoded.get("t"), decoded.get("s")
    if not isinstance(at, int | float) or not isinstance(seq, int):
        return None
    return float(at), seq


def lookup_events(store: CloudTrailStore, limiter: RateLimiter, account_id: str, region: str,
                  params: dict[str, Any]) -> LookupAnswer:
    if not limiter.allow(account_id, region):
        return _fail("ThrottlingException", "Rate exceeded")

    attributes = params.get("LookupAttributes") or []
    if not isinstance(attributes, list) or len(attributes) > 1:
        return _fail("InvalidLookupAttributesException", "You can only specify one lookup attribute.")
    attribute: tuple[str, str] | None = None
    if attributes:
        item = attributes[0] if isinstance(attributes[0], dict) else {}
        key, value = item.get("AttributeKey"), item.get("AttributeValue")
        if key not in LOOKUP_ATTRIBUTES or not isinstance(value, str) or not value:
            return _fail("InvalidLookupAttributesException", f"Lookup attribute key {key!r} is not valid.")
        attribute = (str(key), value)

    category = params.get("EventCategory")
    if category is not None and category != "insight":
        return _fail("InvalidEventCategoryException", f"Event category {category!r} is not valid.")

    limit = params.get("MaxResults", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
        return _fail("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")

    try:
        start = parse_time(params["StartTime"]) if params.get("StartTime") is not None else None
        end = parse_time(params["EndTime"]) if params.get("EndTime") is not None else None
    except ValueError:
        return _fail("InvalidTimeRangeException", "StartTime and EndTime must be timestamps.")
    if start is not None and end is not None and start > end:
        return _fail("InvalidTimeRangeException", "The start time must not be after the end time.")

    fingerprint = _fingerprint(params)
    before = None
    if params.get("NextToken") is not None:
        before = _decode_token(params["NextToken"], fingerprint)
        if before is None:
            return _fail("InvalidNextTokenException", "Invalid NextToken.")

    if category == "insight":  # the sandbox has no Insights events
        return LookupAnswer(200, {"Events": []})
    earliest = start if start is not None else time.time() - LOOKUP_WINDOW_SECONDS
    page, more = store.lookup(account_id, region, attribute=attribute, start=earliest, end=end, limit=limit,
                              before=before)
    body: dict[str, Any] = {"Events": [event.as_lookup_entry() for event in page]}
    if more and page:
        body["NextToken"] = _encode_token(page[-1].order, fingerprint)
    return LookupAnswer(200, body)
