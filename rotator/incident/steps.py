"""The steps of containment after the key itself: cut the sessions it minted, look at the console login.

Each returns a Step saying what happened; none raises for an AWS refusal (the caller decides what a failed
step means). Also the Step type every part of the playbook reports with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from rotator.errors import AwsError
from rotator.incident.ports import IncidentIam

SESSION_DENY_SID = "RotatorDenySessionsIssuedBeforeT0"


class StepStatus(StrEnum):
    DONE = "done"
    ALREADY = "already done"
    NOTHING = "nothing to do"
    ATTENTION = "needs attention"  # reported for a human; not a failure
    PLANNED = "would do"  # --dry-run
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    name: str
    status: StepStatus
    detail: str

    @property
    def failed(self) -> bool:
        return self.status is StepStatus.FAILED

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail}


def session_deny_policy_name(key_id: str) -> str:
    return f"rotator-deny-sessions-{key_id}"


def session_deny_document(t0: datetime) -> str:
    """Deny everything to sessions issued before T0. Requests signed with a long-lived key carry no
    aws:TokenIssueTime, so the condition never matches them: only sessions are cut."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": SESSION_DENY_SID, "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": iso_seconds(t0)}},
        }],
    }, separators=(",", ":"))


def t0_of_document(document: str) -> str | None:
    """The T0 of a session-deny policy rotator wrote earlier, as written."""
    try:
        statements = json.loads(document).get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Sid") == SESSION_DENY_SID:
                return str(statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_whole_second(moment: datetime) -> datetime:
    """T0 is taken after the key is verified Inactive and rounded up, so every session the key could have
    minted was issued before it."""
    return datetime.fromtimestamp(math.floor(moment.timestamp()) + 1, UTC)


def deny_sessions(iam: IncidentIam, kind: str, name: str, key_id: str, t0: datetime, dry_run: bool) -> Step:
    policy = session_deny_policy_name(key_id)
    what = f"inline policy {policy} on {kind} {name}"
    try:
        existing = iam.user_policy(name, policy) if kind == "user" else iam.role_policy(name, policy)
        if existing is not None:
            earlier = t0_of_document(existing) or "an earlier T0"
            return Step("deny sessions", StepStatus.ALREADY, f"{what} already denies sessions issued before {earlier}")
        if dry_run:
            return Step("deny sessions", StepStatus.PLANNED, f"put {what} denying sessions issued before T0")
        document = session_deny_document(t0)
        if kind == "user":
            iam.put_user_policy(name, policy, document)
        else:
            iam.put_role_policy(name, policy, document)
    except AwsError as exc:
        return Step("deny sessions", StepStatus.FAILED, f"{what}: {exc}")
    return Step("deny sessions", StepStatus.DONE, f"{what} denies every session issued before {iso_seconds(t0)}")


def login_profile(iam: IncidentIam, user: str, disable_console: bool, dry_run: bool) -> Step:
    try:
        created = iam.login_profile_created(user)
        if created is None:
            return Step("console login", StepStatus.NOTHING, f"user {user} has no console password")
        since = f"user {user} has a console password (created {iso_seconds(created)})"
        if not disable_console:
            return Step("console login", StepStatus.ATTENTION,
                        f"{since}; left as is: re-run with --disable-console to delete it")
        if dry_run:
            return Step("console login", StepStatus.PLANNED, f"{since}: delete it (--disable-console)")
        iam.delete_login_profile(user)
    except AwsError as exc:
        return Step("console login", StepStatus.FAILED, f"user {user}: {exc}")
    return Step("console login", StepStatus.DONE, f"{since}: deleted (--disable-console)")
