"""What AWS does when it finds one of your access keys exposed in public: an AWS Health event, delivered by
an EventBridge rule to an SQS queue, and a quarantine policy attached to the key's user.

The event is the AWS Health event for ``AWS_RISK_CREDENTIALS_EXPOSED`` as EventBridge emits it (AWS Health
user guide, "Reference: AWS Health events Amazon EventBridge schema", and its security-event sample: source
``aws.health``, detail-type ``AWS Health Event``, region us-east-1, ``resources`` empty, the key ids in
``detail.affectedEntities[].entityValue``, ``startTime`` in the sample's RFC 1123 form). An EventBridge rule
whose target is an SQS queue sends the whole event as the message body unless an input transformer says
otherwise (EventBridge SQS target: "the message to send to the queue ... default: the entire EventBridge
event"), so it is put into moto's queue as that JSON, without going through the front (EventBridge's own
SendMessage is not a call of the account's principals).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from moto.iam.models import iam_backends
from moto.sqs.models import sqs_backends
from moto.utilities.utils import get_partition

from rotator.sandbox.aws import managed_policies

EXPOSED_EVENT_TYPE = "AWS_RISK_CREDENTIALS_EXPOSED"
QUARANTINE_POLICIES = {
    "V2": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2",
    "V3": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3",
}


@dataclass(frozen=True)
class DeliveredEvent:
    """A Health event put into a queue: the SQS message id and the event (the message body, parsed)."""

    message_id: str
    event: dict[str, Any]


def exposed_key_event(access_key_ids: list[str], account_id: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """The EventBridge event of AWS Health finding ``access_key_ids`` exposed."""
    moment = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    suffix = uuid.uuid4().hex.upper()
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS Health Event",
        "source": "aws.health",
        "account": account_id,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventArn": f"arn:aws:health:us-east-1::event/RISK/{EXPOSED_EVENT_TYPE}/{EXPOSED_EVENT_TYPE}_{suffix}",
            "service": "RISK",
            "eventTypeCode": EXPOSED_EVENT_TYPE,
            "eventTypeCategory": "issue",
            "eventScopeCode": "ACCOUNT_SPECIFIC",
            "communicationId": f"{uuid.uuid4().hex}-1",
            "startTime": moment.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "eventRegion": "us-east-1",
            # The schema's sample text; AWS's wording varies and nothing should parse it.
            "eventDescription": [{"language": "en_US",
                                  "latestDescription": "A description of the event will be provided here"}],
            "affectedEntities": [{"entityValue": key_id} for key_id in access_key_ids],
            "affectedAccount": account_id,
        },
    }


def _queue(queue_url: str) -> tuple[Any, str]:
    """(moto's SQS backend holding the queue, queue name) for a queue URL ``.../<account>/<name>``."""
    parts = [p for p in urlparse(queue_url).path.split("/") if p]
    if len(parts) != 2:
        raise ValueError(f"not an SQS queue URL: {queue_url!r} (expected .../<account id>/<queue name>)")
    account_id, name = parts
    if account_id in sqs_backends:
        for backend in [b for _, b in list(sqs_backends[account_id].items())]:
            if name in backend.queues:
                return backend, name
    raise ValueError(f"no queue {name!r} in account {account_id} (create it first with sqs.create_queue)")


def deliver(queue_url: str, event: dict[str, Any]) -> DeliveredEvent:
    """Put ``event`` into the queue the way an EventBridge rule's SQS target does."""
    backend, name = _queue(queue_url)
    body = json.dumps(event)
    fifo = name.endswith(".fifo")
    message = backend.send_message(name, body, deduplication_id=event["id"] if fifo else None,
                                   group_id="aws.health" if fifo else None)
    return DeliveredEvent(message_id=str(message.id), event=event)


def attach_quarantine_policy(account_id: str, user_name: str, version: str = "V3") -> str:
    """Attach AWS's compromised-key quarantine policy to a user as AWS does; returns the policy ARN.

    V3 by default: the newest version in the AWS managed policy reference (AWSCompromisedKeyQuarantineV3,
    version 1 of 2024-08-21), the one AWS attaches today; V2 for users quarantined before it.

    Raises ValueError for an unknown version or user. No CloudTrail record is written: what AWS logs for its
    own attachment is not documented.
    """
    policy_arn = QUARANTINE_POLICIES.get(version.upper())
    if policy_arn is None:
        raise ValueError(f"unknown quarantine policy version {version!r} "
                         f"(expected one of {sorted(QUARANTINE_POLICIES)})")
    backend = iam_backends[account_id][get_partition("us-east-1")]
    if user_name not in backend.users:
        raise ValueError(f"no IAM user {user_name!r} in account {account_id}")
    managed_policies.ensure(account_id, policy_arn)
    backend.attach_user_policy(policy_arn, user_name)
    return policy_arn
