"""The sandbox's CloudTrail: every recorded or staged event, and ``LookupEvents`` over them.

Events live per (account, region), sorted by (time, arrival) and indexed by every lookup attribute, so a
lookup is two binary searches in one list even with tens of thousands of staged events.

What LookupEvents can see follows CloudTrail's Event history ("Viewing events with CloudTrail Event
history"; LookupEvents API reference: "Looks up management events or CloudTrail Insights events"):

- management events only: data events (S3 object-level calls, SQS messages...) are kept (``events()``
  shows them) but never returned by a lookup ("The CloudTrail Event history doesn't record data events",
  Amazon S3 and Amazon SQS CloudTrail pages);
- only once delivered: CloudTrail is eventually consistent ("Managing data consistency in CloudTrail") and a
  record reaches Event history some minutes after its call, not at once. Each event carries the moment it
  becomes visible: the call's time + the store's delivery delay when recorded, or an explicit moment for
  staged events (a late AssumeRole record); the default delay is 0 so tests stay fast.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from rotator.sandbox.aws.events import EVENT_VERSION, iso_time, resources_of
from rotator.sandbox.aws.keys import default_account

LOOKUP_ATTRIBUTES = ("EventId", "EventName", "ReadOnly", "Username", "ResourceType", "ResourceName",
                     "EventSource", "AccessKeyId")
LOOKUP_WINDOW_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True)
class StoredEvent:
    at: float  # whole epoch seconds, as CloudTrail's eventTime
    seq: int
    account_id: str
    region: str
    summary: dict[str, Any]  # the LookupEvents ``Events[]`` entry, without CloudTrailEvent
    record_json: str
    attributes: tuple[tuple[str, str], ...] = field(repr=False)
    visible_at: float = 0.0  # epoch seconds from which LookupEvents returns it
    management: bool = True

    @property
    def order(self) -> tuple[float, int]:
        return (self.at, self.seq)

    def as_lookup_entry(self) -> dict[str, Any]:
        return {**self.summary, "CloudTrailEvent": self.record_json}

    @property
    def record(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.record_json)
        return loaded


def _order(event: StoredEvent) -> tuple[float, int]:
    return event.order


@dataclass
class _RegionTrail:
    events: list[StoredEvent] = field(default_factory=list)
    index: dict[tuple[str, str], list[StoredEvent]] = field(default_factory=dict)
    data_events: list[StoredEvent] = field(default_factory=list)

    def add(self, event: StoredEvent, *, keep_sorted: bool) -> None:
        if not event.management:
            self.data_events.append(event)  # never looked up, so never indexed
            return
        targets = [self.events] + [self.index.setdefault(pair, []) for pair in event.attributes]
        for target in targets:
            if not keep_sorted or not target or target[-1].order <= event.order:
                target.append(event)
            else:
                bisect.insort(target, event, key=_order)

    def resort(self) -> None:
        self.events.sort(key=_order)
        for target in self.index.values():
            target.sort(key=_order)

    def all_events(self) -> list[StoredEvent]:
        return self.events + self.data_events

    def deliver_now(self, now: float) -> None:
        for target in [self.events, self.data_events, *self.index.values()]:
            target[:] = [replace(e, visible_at=now) if e.visible_at > now else e for e in target]


def username_of(identity: dict[str, Any]) -> str | None:
    """LookupEvents' ``Username``: the user name, the role session name, or ``root``."""
    if identity.get("userName"):
        return str(identity["userName"])
    kind = identity.get("type")
    if kind == "Root":
        return "root"
    if kind in ("AssumedRole", "FederatedUser") and identity.get("arn"):
        return str(identity["arn"]).rsplit("/", 1)[-1]
    return None


def parse_time(value: Any) -> float:
    """Epoch seconds from an epoch number or an ISO 8601 string (what boto3 and staged records use)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
    raise ValueError(f"not a time: {value!r}")


class CloudTrailStore:
    """Thread-safe; holds the lock only for list operations, never while sleeping or doing I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trails: dict[tuple[str, str], _RegionTrail] = {}
        self._seq = itertools.count()
        self._delivery_delay = 0.0

    # --- delivery -------------------------------------------------------------------------------

    @property
    def delivery_delay(self) -> float:
        """Seconds between a call and its record becoming visible to LookupEvents (AWS: about 5 minutes)."""
        with self._lock:
            return self._delivery_delay

    @delivery_delay.setter
    def delivery_delay(self, seconds: float) -> None:
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError("the CloudTrail delivery delay must be a finite number of seconds >= 0")
        with self._lock:
            self._delivery_delay = float(seconds)

    def deliver_pending(self) -> int:
        """Make every record not yet delivered visible now; returns how many there were."""
        now = time.time()
        with self._lock:
            pending = sum(1 for trail in self._trails.values() for e in trail.all_events() if e.visible_at > now)
            for trail in self._trails.values():
                trail.deliver_now(now)
        return pending

    # --- writing --------------------------------------------------------------------------------

    def record(self, record: dict[str, Any]) -> StoredEvent:
        """Store one complete CloudTrail record (as the front builds them), visible after the delivery delay."""
        event = replace(self._stored(record), visible_at=time.time() + self.delivery_delay)
        with self._lock:
            self._trails.setdefault((event.account_id, event.region), _RegionTrail()).add(event, keep_sorted=True)
        return event

    def stage(self, records: Iterable[dict[str, Any]], *, deliver_at: float | None = None) -> int:
        """Add events as if CloudTrail had recorded them (e.g. an attacker's calls in several regions).

        Each record needs ``eventName`` and ``eventSource``; ``eventTime`` (ISO 8601 or epoch seconds),
        ``awsRegion`` (default us-east-1), ``userIdentity`` (``accessKeyId``, ``userName``, ``accountId``...)
        and ``eventID`` are filled in when missing. A record whose ``managementEvent`` is false is a data
        event (never looked up). ``deliver_at`` (epoch seconds) holds them back from LookupEvents until then,
        whatever their ``eventTime``; by default they are visible at once. Raises ValueError naming the first
        bad record.
        """
        visible_at = time.time() if deliver_at is None else float(deliver_at)
        prepared = [replace(self._stored(_complete(record, position)), visible_at=visible_at)
                    for position, record in enumerate(records)]
        with self._lock:
            touched: set[tuple[str, str]] = set()
            for event in prepared:
                where = (event.account_id, event.region)
                self._trails.setdefault(where, _RegionTrail()).add(event, keep_sorted=False)
                touched.add(where)
            for where in touched:
                self._trails[where].resort()
        return len(prepared)

    def clear(self) -> None:
        with self._lock:
            self._trails.clear()

    def _stored(self, record: dict[str, Any]) -> StoredEvent:
        identity = record.get("userIdentity") or {}
        account = str(record.get("recipientAccountId") or identity.get("accountId") or default_account())
        at = float(int(parse_time(record["eventTime"])))
        summary: dict[str, Any] = {
            "EventId": str(record["eventID"]),
            "EventName": str(record["eventName"]),
            "ReadOnly": "true" if record.get("readOnly") else "false",
            "EventTime": at,
            "EventSource": str(record["eventSource"]),
            "Resources": resources_of(record),
        }
        if identity.get("accessKeyId"):
            summary["AccessKeyId"] = str(identity["accessKeyId"])
        username = username_of(identity)
        if username:
            summary["Username"] = username
        attributes: list[tuple[str, str]] = [(name, str(summary[name])) for name in
                      ("EventId", "EventName", "ReadOnly", "EventSource", "AccessKeyId", "Username") if name in summary]
        for resource in summary["Resources"]:
            attributes += [("ResourceType", resource["ResourceType"]), ("ResourceName", resource["ResourceName"])]
        return StoredEvent(at=at, seq=next(self._seq), account_id=account, region=str(record["awsRegion"]),
                           summary=summary, record_json=json.dumps(record, default=str),
                           attributes=tuple(dict.fromkeys(attributes)),
                           management=record.get("managementEvent", True) is not False)

    # --- reading --------------------------------------------------------------------------------

    def events(self, *, account_id: str | None = None, region: str | None = None,
               delivered_only: bool = False) -> list[dict[str, Any]]:
        """Every stored record, data events and undelivered ones included unless ``delivered_only``, oldest
        first (for tests and the demo: what happened, not what LookupEvents shows)."""
        now = time.time()
        with self._lock:
            chosen = [event for (account, where), trail in self._trails.items()
                      if (account_id is None or account == account_id) and (region is None or where == region)
                      for event in trail.all_events() if not delivered_only or event.visible_at <= now]
        chosen.sort(key=_order)
        return [event.record for event in chosen]

    def lookup(self, account_id: str, region: str, *, attribute: tuple[str, str] | None, start: float,
               end: float | None, limit: int, before: tuple[float, int] | None) -> tuple[list[StoredEvent], bool]:
        """Up to ``limit`` delivered events, newest first, strictly older than ``before``; and whether more
        delivered events remain."""
        now = time.time()
        with self._lock:
            trail = self._trails.get((account_id, region))
            if trail is None:
                return [], False
            candidates = trail.events if attribute is None else trail.index.get(attribute, [])
            low = bisect.bisect_left(candidates, (start, -1), key=_order)
            high = len(candidates) if end is None else bisect.bisect_right(candidates, (end, sys.maxsize),
                                                                            key=_order)
            if before is not None:
                high = min(high, bisect.bisect_left(candidates, before, key=_order))
            page: list[StoredEvent] = []
            position = high - 1
            while position >= low and len(page) < limit:
                if candidates[position].visible_at <= now:
                    page.append(candidates[position])
                position -= 1
            more = any(candidates[i].visible_at <= now for i in range(position, low - 1, -1))
        return page, more


def _complete(record: dict[str, Any], position: int) -> dict[str, Any]:
    if not isinstance(record, dict) or not record.get("eventName") or not record.get("eventSource"):
        raise ValueError(f"staged event #{position} needs at least eventName and eventSource")
    completed = dict(record)
    completed.setdefault("eventVersion", EVENT_VERSION)
    try:
        moment = parse_time(completed["eventTime"]) if "eventTime" in completed else time.time()
    except ValueError as exc:
        raise ValueError(f"staged event #{position}: {exc}") from None
    completed["eventTime"] = iso_time(dt.datetime.fromtimestamp(moment, dt.UTC))
    completed.setdefault("awsRegion", "us-east-1")
    completed.setdefault("eventID", str(uuid.uuid4()))
    completed.setdefault("requestID", str(uuid.uuid4()))
    completed.setdefault("eventType", "AwsApiCall")
    completed.setdefault("readOnly", str(completed["eventName"]).startswith(("Get", "List", "Describe", "Lookup")))
    identity = dict(completed.get("userIdentity") or {})
    identity.setdefault("type", "IAMUser" if identity.get("userName") else "Unknown")
    identity.setdefault("accountId", default_account())
    completed["userIdentity"] = identity
    completed.setdefault("recipientAccountId", identity["accountId"])
    return completed
