"""Fakes for AWS's exposure reports: the SQS queue (long polling, visibility, a redrive policy) and the exposure
ledger, plus an AWS Health event as EventBridge delivers it to SQS."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from rotator.errors import AwsUnavailable
from rotator.incident.events import QUARANTINE, ExposureRecord
from rotator.service.ports import QueueInfo, QueueMessage
from tests.unit.incident_fakes import ACCOUNT

QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/rotator-exposures"
EVENT_ARN = "arn:aws:health:global::event/IAM/AWS_RISK_CREDENTIALS_EXPOSED/AWS_RISK_CREDENTIALS_EXPOSED_ABC123"


def health_event(*key_ids: str, arn: str = EVENT_ARN, account: str = ACCOUNT, event_id: str = "7bf73129-1428-4cd3",
                 **overrides: Any) -> str:
    """The sample AWS_RISK_CREDENTIALS_EXPOSED event of the AWS Health User Guide's EventBridge schema page,
    as the body of the SQS message an EventBridge rule delivers."""
    event: dict[str, Any] = {
        "version": "0", "id": event_id, "detail-type": "AWS Health Event", "source": "aws.health",
        "account": account, "time": "2026-12-04T06:27:57Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventArn": arn, "service": "RISK", "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
            "eventTypeCategory": "issue", "startTime": "Fri, 04 Dec 2026 06:27:00 GMT",
            "eventDescription": [{"language": "en_US", "latestDescription": "Your key was found on GitHub."}],
            "affectedEntities": [{"entityValue": key_id} for key_id in key_ids],
        },
    }
    event.update(overrides)
    return json.dumps(event)


@dataclass
class _Held:
    message_id: str
    body: str
    receives: int = 0
    visible_at: float = 0.0


@dataclass
class FakeQueue:
    """An SQS standard queue: received messages are invisible for the visibility timeout; a message received
    more than ``max_receive_count`` times moves to ``dead_letters`` on the next receive (SQS's redrive)."""

    url: str = QUEUE_URL
    max_receive_count: int | None = 3
    messages: list[_Held] = field(default_factory=list)
    dead_letters: list[_Held] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    visibility_changes: list[tuple[str, int]] = field(default_factory=list)
    down: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def send(self, body: str) -> str:
        with self._changed:
            message_id = f"msg-{next(self._ids)}"
            self.messages.append(_Held(message_id, body))
            self._changed.notify_all()
            return message_id

    def describe(self) -> QueueInfo:
        dead = f"arn:aws:sqs:us-east-1:{ACCOUNT}:rotator-exposures-dlq" if self.max_receive_count else None
        return QueueInfo(f"arn:aws:sqs:us-east-1:{ACCOUNT}:rotator-exposures", dead, self.max_receive_count)

    def receive(self, *, max_messages: int, wait_seconds: int, visibility_timeout: int) -> list[QueueMessage]:
        if self.down:
            raise AwsUnavailable("sqs:ReceiveMessage: ServiceUnavailable", code="ServiceUnavailable")
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            while True:
                now = time.monotonic()
                taken: list[QueueMessage] = []
                for held in list(self.messages):
                    if held.visible_at > now:
                        continue
                    if self.max_receive_count is not None and held.receives >= self.max_receive_count:
                        self.messages.remove(held)
                        self.dead_letters.append(held)
                        continue
                    held.receives += 1
                    held.visible_at = now + visibility_timeout
                    taken.append(QueueMessage(held.message_id, f"{held.message_id}/{held.receives}", held.body,
                                              held.receives))
                    if len(taken) == max_messages:
                        break
                if taken or now >= deadline:
                    return taken
                self._changed.wait(min(0.05, deadline - now))

    def delete(self, message: QueueMessage) -> None:
        with self._changed:
            self.messages = [m for m in self.messages if m.message_id != message.message_id]
            self.deleted.append(message.message_id)

    def make_visible_in(self, message: QueueMessage, seconds: int) -> None:
        with self._changed:
            self.visibility_changes.append((message.message_id, seconds))
            for held in self.messages:
                if held.message_id == message.message_id:
                    held.visible_at = time.monotonic() + seconds
            self._changed.notify_all()

    def waiting(self) -> list[str]:
        with self._changed:
            return [m.message_id for m in self.messages]


@dataclass
class FakeExposureLedger:
    records: dict[str, ExposureRecord] = field(default_factory=dict)
    saves: int = 0

    def get(self, signal_id: str) -> ExposureRecord | None:
        return self.records.get(signal_id)

    def for_key(self, key_id: str) -> list[ExposureRecord]:
        return sorted((r for r in self.records.values() if r.key_id == key_id), key=lambda r: r.first_seen_at)

    def quarantines(self) -> list[ExposureRecord]:
        return [r for r in self.records.values() if r.source == QUARANTINE]

    def save(self, record: ExposureRecord) -> None:
        known = self.records.get(record.signal_id)
        self.records[record.signal_id] = replace(record, first_seen_at=known.first_seen_at) if known else record
        self.saves += 1

    def recent(self, limit: int) -> list[ExposureRecord]:
        return sorted(self.records.values(), key=lambda r: r.last_seen_at, reverse=True)[:limit]
