"""AWS says a key is exposed: what such a report looks like, what rotator accepts, and when a report is news.

Pure: no I/O, no clock. Two signals exist.

- **AWS Health.** When AWS finds an access key in a public place it emits an ``AWS_RISK_CREDENTIALS_EXPOSED``
  event (source ``aws.health``, detail-type ``AWS Health Event``, the key id in
  ``detail.affectedEntities[].entityValue``). An EventBridge rule whose target is an SQS queue delivers the
  event itself, as JSON, as the message body (no envelope around it). Schema: AWS Health User Guide,
  "Reference: AWS Health events Amazon EventBridge schema" (the sample ``AWS_RISK_CREDENTIALS_EXPOSED`` payload
  there); ``account`` is the account the event was sent to, ``detail.affectedAccount`` the affected one when an
  organizational view forwards it; event ARNs follow ``arn:aws:health:<region>::event/<SERVICE>/<TYPE>/<ID>``
  (AWS Health API Reference, EntityAccountFilter: pattern and 1600-character limit). AWS Health delivers
  "at least once" (AWS Health User Guide, "Monitoring events in AWS Health with Amazon EventBridge"): the same
  event may arrive twice.
- **The quarantine policy.** AWS also attaches an AWS managed policy, ``AWSCompromisedKeyQuarantine`` (V1),
  ``…V2`` or ``…V3`` (AWS Managed Policy Reference), to the user whose key leaked. It names no key id.

The idempotency rule (``decide``): a report already handled is a duplicate; a key with an incident that is
already contained is only annotated; anything else runs the playbook, which itself reuses the key's incident,
so one key never has two incidents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rotator.domain import is_access_key_id

HEALTH_SOURCE = "aws.health"
HEALTH_DETAIL_TYPE = "AWS Health Event"
EXPOSED_EVENT_TYPE = "AWS_RISK_CREDENTIALS_EXPOSED"
# AWS Health API Reference (EntityAccountFilter.eventArn): the pattern of an event ARN.
_EVENT_ARN = re.compile(r"arn:aws(-[a-z]+(-[a-z]+)?)?:health:[^:]*:[^:]*:event(?:/[\w-]+){3}")
_EVENT_ARN_LIMIT = 1600
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# The AWS managed policies AWS attaches to a user whose key it found exposed (AWS Managed Policy Reference:
# AWSCompromisedKeyQuarantine, AWSCompromisedKeyQuarantineV2, AWSCompromisedKeyQuarantineV3). Their
# descriptions: "Do NOT remove this policy. Instead, follow the instructions specified in the support case
# created for you regarding this event."
QUARANTINE_POLICY_NAMES = ("AWSCompromisedKeyQuarantine", "AWSCompromisedKeyQuarantineV2",
                           "AWSCompromisedKeyQuarantineV3")
QUARANTINE_POLICY_ARNS = tuple(f"arn:aws:iam::aws:policy/{name}" for name in QUARANTINE_POLICY_NAMES)
# An event-driven incident says it expects AWS to quarantine the user too; if the policy never shows up
# within this long, a quarantine seen later is a new signal.
QUARANTINE_EXPECTED_FOR = timedelta(hours=24)
# incidents.actor holds at most 200 characters.
_ACTOR_LIMIT = 200

HEALTH = "aws-health"
QUARANTINE = "aws-quarantine"


class RejectReason(StrEnum):
    NOT_JSON = "not_json"
    FOREIGN = "foreign"  # another source or detail-type: not an AWS Health event
    EVENT_TYPE = "event_type"  # an AWS Health event of another type
    MALFORMED = "malformed"  # an exposure event missing what AWS always sends
    NO_KEY = "no_key"
    ACCOUNT = "account"  # a key of an account no configured account reaches


@dataclass(frozen=True)
class Rejection:
    """A message rotator will not act on: it is logged with ``reason``, then left for the queue's dead-letter
    queue, or deleted when the queue has none."""

    code: RejectReason
    reason: str


@dataclass(frozen=True)
class HealthExposure:
    event_arn: str
    event_id: str  # EventBridge's id of this delivery
    account_id: str  # the affected account
    account: str  # the configured account name that reaches it
    key_ids: tuple[str, ...]
    ignored: tuple[str, ...] = ()  # affected entities that are not access key ids

    @property
    def actor(self) -> str:
        return health_actor(self.event_arn)

    @property
    def reason(self) -> str:
        return f"AWS Health {EXPOSED_EVENT_TYPE}: AWS found the key exposed in public (event {self.event_arn})"


def health_actor(event_arn: str) -> str:
    """``aws-health:<event arn>``; an ARN too long for the record keeps its start and a digest of the whole."""
    actor = f"{HEALTH}:{event_arn}"
    if len(actor) <= _ACTOR_LIMIT:
        return actor
    digest = hashlib.sha256(event_arn.encode()).hexdigest()[:16]
    return f"{actor[:_ACTOR_LIMIT - 18]}…~{digest}"


def quarantine_actor(account_id: str, user_name: str) -> str:
    return f"{QUARANTINE}:{account_id}/{user_name}"[:_ACTOR_LIMIT]


def health_signal_id(event_arn: str, key_id: str) -> str:
    return f"{HEALTH}:{event_arn}#{key_id}"


def quarantine_signal_id(account: str, user_name: str) -> str:
    return f"{QUARANTINE}:{account}/{user_name}"


def parse_health_message(body: str, account_ids: Mapping[str, str]) -> HealthExposure | Rejection:
    """An SQS message body as EventBridge delivers an AWS Health event, checked. ``account_ids``: every AWS
    account id rotator reaches → its configured account name."""
    try:
        event = json.loads(body)
    except json.JSONDecodeError as exc:
        return Rejection(RejectReason.NOT_JSON, f"not JSON ({exc.msg} at character {exc.pos})")
    except ValueError as exc:  # e.g. a lone surrogate
        return Rejection(RejectReason.NOT_JSON, f"not JSON ({exc})")
    if not isinstance(event, dict):
        return Rejection(RejectReason.NOT_JSON, f"not a JSON object but a JSON {type(event).__name__}")
    source, detail_type = event.get("source"), event.get("detail-type")
    if source != HEALTH_SOURCE or detail_type != HEALTH_DETAIL_TYPE:
        return Rejection(RejectReason.FOREIGN, f"not an AWS Health event (source {_shown(source)}, detail-type "
                                               f"{_shown(detail_type)}); the EventBridge rule should match only "
                                               f"{EXPOSED_EVENT_TYPE}")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return Rejection(RejectReason.MALFORMED, "an AWS Health event without a detail object")
    event_type = detail.get("eventTypeCode")
    if event_type != EXPOSED_EVENT_TYPE:
        return Rejection(RejectReason.EVENT_TYPE, f"AWS Health event of type {_shown(event_type)}, not "
                                                  f"{EXPOSED_EVENT_TYPE}")
    arn = detail.get("eventArn")
    if not isinstance(arn, str) or len(arn) > _EVENT_ARN_LIMIT or not _EVENT_ARN.fullmatch(arn):
        return Rejection(RejectReason.MALFORMED, f"detail.eventArn {_shown(arn)} is not an AWS Health event ARN")
    account_id = detail.get("affectedAccount", event.get("account"))
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        return Rejection(RejectReason.MALFORMED, f"no 12-digit affected account (detail.affectedAccount or "
                                                 f"account: {_shown(account_id)})")
    entities = detail.get("affectedEntities")
    values = [e.get("entityValue") for e in entities if isinstance(e, dict)] if isinstance(entities, list) else []
    keys = tuple(dict.fromkeys(v for v in values if isinstance(v, str) and is_access_key_id(v)))
    ignored = tuple(_shown(v) for v in values if not (isinstance(v, str) and is_access_key_id(v)))
    if not keys:
        return Rejection(RejectReason.NO_KEY, f"event {arn} names no access key id in "
                                              f"detail.affectedEntities[].entityValue ({len(values)} entities)")
    account = account_ids.get(account_id)
    if account is None:
        return Rejection(RejectReason.ACCOUNT, f"event {arn} is about account {account_id}, which no configured "
                                               "account reaches; add an [[aws.accounts]] entry for it, or contain "
                                               f"{', '.join(keys)} by hand")
    event_id = event.get("id")
    return HealthExposure(arn, event_id if isinstance(event_id, str) else "", account_id, account, keys, ignored)


def _shown(value: object) -> str:
    """A value from an untrusted message, short and on one line, for a log line."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- what rotator remembers of each report -------------------------------------------------------------------


class Outcome(StrEnum):
    ACTED = "acted"  # the playbook ran and recorded its incident
    ANNOTATED = "annotated"  # the key's incident (already contained) was told about this report
    DUPLICATE = "duplicate"  # this very report was handled before
    NOTIFIED = "notified"  # on_exposed = "notify": owners told what to run, nothing changed
    FAILED = "failed"  # not contained, or the incident could not be recorded: tried again
    BUSY = "busy"  # another replica handles this key right now: tried again


class QuarantineState(StrEnum):
    EXPECTED = "expected"  # an event-driven incident on the user's key; AWS usually quarantines the user too
    ATTACHED = "attached"  # the policy was seen attached and is explained by an incident (or a notification)
    DETACHED = "detached"  # a human removed it: attaching it again is a new signal


@dataclass(frozen=True)
class ExposureRecord:
    """One report rotator handled: a Health event's key (``aws-health:<arn>#<key>``) or a quarantined user
    (``aws-quarantine:<account>/<user>``)."""

    signal_id: str
    source: str  # HEALTH or QUARANTINE
    actor: str
    account: str | None
    user_name: str | None
    key_id: str | None
    action: str  # the on_exposed applied
    outcome: Outcome
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    incident_id: str | None = None
    quarantine: QuarantineState | None = None


class Decision(StrEnum):
    ACT = "act"
    ANNOTATE = "annotate"
    DUPLICATE = "duplicate"


SETTLED = frozenset({Outcome.ACTED, Outcome.ANNOTATED, Outcome.NOTIFIED, Outcome.DUPLICATE})


def decide(signal_id: str, earlier: Sequence[ExposureRecord], *, has_incident: bool,
           key_inactive: bool | None, notify_only: bool) -> Decision:
    """What a report of a key does, given what was done before for that key.

    ``earlier``: the records of reports of the same key; ``has_incident``: the key has an incident (opened by a
    human or by a report); ``key_inactive``: IAM shows the key Inactive (None: not looked at)."""
    if any(r.signal_id == signal_id and r.outcome in SETTLED for r in earlier):
        return Decision.DUPLICATE
    if has_incident and key_inactive:
        return Decision.ANNOTATE
    if notify_only and any(r.outcome is Outcome.NOTIFIED for r in earlier):
        return Decision.DUPLICATE  # the owners were already told what to run for this key
    return Decision.ACT


def quarantine_is_news(record: ExposureRecord | None, now: datetime) -> bool:
    """A quarantine policy seen on a tracked user is a new signal unless a record explains it: it was seen
    before and never seen removed, or an event-driven incident on the user's key expects it (for a while)."""
    if record is None or record.quarantine is None or record.outcome not in SETTLED:
        return True
    if record.quarantine is QuarantineState.ATTACHED:
        return False
    if record.quarantine is QuarantineState.EXPECTED:
        return now - record.last_seen_at > QUARANTINE_EXPECTED_FOR
    return True  # DETACHED: a human removed it, and it is back


def quarantine_lines(user_name: str, policy_arn: str, key_id: str) -> list[str]:
    """What the quarantine policy means for the pipelines, and what removing it takes (AWS Managed Policy
    Reference, AWSCompromisedKeyQuarantineV3: it denies, among others, iam:CreateAccessKey, ec2:RunInstances and
    lambda:CreateFunction to the user, and says not to remove it but to follow the AWS Support case)."""
    name = policy_arn.rsplit("/", 1)[-1]
    return [
        f"AWS's quarantine policy {name} is still attached to user {user_name}: it also limits the new key the "
        "pipelines now hold (it denies actions such as iam:CreateAccessKey, ec2:RunInstances and "
        "lambda:CreateFunction to this user)",
        "rotator never detaches it. AWS asks that it stay until the instructions of the AWS Support case opened "
        f"for this exposure are followed: {key_id} stays Inactive (delete it once the audit is reviewed), the "
        "account's activity is checked (the CloudTrail audit in this thread), and the case is answered",
        f"then a human removes it: aws iam detach-user-policy --user-name {user_name} --policy-arn {policy_arn}",
    ]
