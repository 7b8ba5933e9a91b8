"""rotator.incident.ports.CloudTrail over boto3: LookupEvents by AccessKeyId or EventName, paced per region.

AWS allows 2 LookupEvents requests per second per account and region. Each region gets a token bucket
holding one token, so requests are spaced 1/rate apart however many keys are audited in that region at
once. botocore's own retries are off for these calls: every attempt, first or retried, must pass the
bucket, and every throttle must be counted for the audit's coverage section. Throttling is backed off
and retried, never dropped; a region that keeps throttling (or failing) beyond a bound raises, and the
audit reports that region as not covered.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rotator.adapters.aws import THROTTLING_CODES, aws_call, translate
from rotator.errors import AwsError, AwsThrottled, AwsUnavailable
from rotator.incident.ports import TrailPage
from rotator.ratelimit import AdaptiveTokenBucket

# One attempt per call: the loop below owns retrying, so that each attempt passes the token bucket.
LOOKUP_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30,
                       user_agent_extra="rotator-audit")
PAGE_SIZE = 50  # LookupEvents' maximum


@dataclass(frozen=True)
class Backoff:
    """How long to wait out throttling and transient failures, and when to give up on a region."""

    base: float = 1.0  # seconds before the first retry; doubles each time
    cap: float = 20.0
    max_throttled: int = 8  # consecutive throttles of one request before the region counts as failed
    max_transient: int = 3  # consecutive 5xx / connection failures of one request

    def delay(self, attempt: int) -> float:
        # Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), never below half the step
        # so that a throttled region really slows down.
        step = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not security


class BotoCloudTrail:
    """CloudTrail of one account. ``client_for(region)`` builds a cloudtrail client for that region."""

    def __init__(self, client_for: Callable[[str], Any], ec2_client: Callable[[], Any], *, rate: float,
                 backoff: Backoff | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client_for = client_for
        self._ec2_client = ec2_client
        self._rate = rate
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._buckets: dict[str, AdaptiveTokenBucket] = {}

    def enabled_regions(self) -> list[str]:
        with aws_call("ec2:DescribeRegions"):
            answer = self._ec2_client().describe_regions(AllRegions=False)
        return sorted(str(region["RegionName"]) for region in answer.get("Regions", []))

    def _region(self, region: str) -> tuple[Any, AdaptiveTokenBucket]:
        # boto3 sessions are not thread-safe: clients are built one at a time, then shared (clients are).
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._client_for(region)
                self._buckets[region] = AdaptiveTokenBucket(self._rate, burst=1, name=f"cloudtrail:{region}")
            return self._clients[region], self._buckets[region]

    def lookup_by_key(self, region: str, key_id: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        return self._lookup(region, "AccessKeyId", key_id, start, end)

    def lookup_by_event(self, region: str, event_name: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        return self._lookup(region, "EventName", event_name, start, end)

    def _lookup(self, region: str, attribute: str, value: str, start: datetime,
                end: datetime) -> Iterator[TrailPage]:
        client, bucket = self._region(region)
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": value}],
            "StartTime": start, "EndTime": end, "MaxResults": PAGE_SIZE,
        }
        token: str | None = None
        while True:
            answer, throttled = self._one_page(client, bucket, region, value,
                                               params if token is None else {**params, "NextToken": token})
            yield TrailPage(records=tuple(_records(answer.get("Events", []))), throttled=throttled)
            token = answer.get("NextToken")
            if not token:
                return

    def _one_page(self, client: Any, bucket: AdaptiveTokenBucket, region: str, key_id: str,
                  params: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        throttled = 0
        transient = 0
        operation = f"cloudtrail:LookupEvents@{region}"
        while True:
            bucket.acquire()
            try:
                answer: dict[str, Any] = client.lookup_events(**params)
            except (ClientError, BotoCoreError) as exc:
                error = translate(exc, operation, key_id)
                if _is_throttle(exc, error):
                    throttled += 1
                    if throttled > self._backoff.max_throttled:
                        raise AwsThrottled(
                            f"{operation}: still throttled after {throttled} attempts of one request",
                            code=error.code, operation=operation,
                            hint="the region's LookupEvents quota is used by someone else too; re-run the audit "
                                 "later, or lower [aws] cloudtrail_requests_per_second") from None
                    self._sleep(self._backoff.delay(throttled))
                    continue
                if isinstance(error, AwsUnavailable):
                    transient += 1
                    if transient > self._backoff.max_transient:
                        raise error from None
                    self._sleep(self._backoff.delay(transient))
                    continue
                raise error from None
            return answer, throttled


def _is_throttle(exc: Exception, error: AwsError) -> bool:
    if isinstance(error, AwsThrottled):
        return True
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLING_CODES


def _records(events: Any) -> Iterator[Mapping[str, Any]]:
    for event in events:
        raw = event.get("CloudTrailEvent") if isinstance(event, dict) else None
        if not isinstance(raw, str):
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # one garbled record must not hide the others
        if isinstance(record, dict):
            yield record


def cloudtrail_for_session(session: Any, home_region: str, *, rate: float, backoff: Backoff | None = None,
                           lock: threading.Lock | None = None) -> BotoCloudTrail:
    """A BotoCloudTrail whose clients come from one boto3 session (one account's credentials). ``lock``: held
    while a client is built, when other threads build clients from the same session (boto3 sessions are not
    thread-safe)."""
    guard = lock or threading.Lock()

    def client_for(region: str) -> Any:
        with guard:
            return session.client("cloudtrail", region_name=region, config=LOOKUP_CONFIG)

    def ec2_client() -> Any:
        with guard:
            return session.client("ec2", region_name=home_region,
                                  config=Config(retries={"mode": "standard", "max_attempts": 5}))

    return BotoCloudTrail(client_for, ec2_client, rate=rate, backoff=backoff)


__all__ = ["Backoff", "BotoCloudTrail", "cloudtrail_for_session"]
