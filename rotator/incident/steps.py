"""The Step type every part of the playbook reports with, the session-deny document, and the console login step.

Each step returns a Step saying what happened; none raises for an AWS refusal (the caller decides what a
failed step means). Cutting sessions, per principal, is rotator.incident.sessions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from rotator.errors import AwsError

if TYPE_CHECKING:
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


# One rotator deny policy per principal (user or role), whose T0 only ever moves later: IAM caps the total size
# of a principal's inline policies (2,048 characters for a user, 10,240 for a role: IAM User Guide, "IAM and
# AWS STS quotas"), so one policy per incident would fail after a handful of incidents on the same user.
SESSION_DENY_POLICY = "rotator-deny-sessions"


def legacy_session_deny_policy_name(key_id: str) -> str:
    """The per-key name earlier versions wrote; still read, so their denies keep counting."""
    return f"{SESSION_DENY_POLICY}-{key_id}"


def session_deny_document(t0: datetime) -> str:
    """Deny everything to sessions issued before T0: AWS's AWSRevokeOlderSessions pattern (IAM User Guide,
    "Revoke IAM role temporary security credentials"), the same document on a user and on a role. Requests
    signed with a long-lived key carry no aws:TokenIssueTime, so the condition never matches them: only
    sessions are cut, never the user's replacement key."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": SESSION_DENY_SID, "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": iso_seconds(t0)}},
        }],
    }, separators=(",", ":"))


def t0_of_document(document: str) -> str | None:
    """The T0 of a session-deny policy rotator wrote earlier, as written (ISO 8601, seconds, UTC); None unless a
    statement with rotator's Sid denies every action on every resource to sessions issued before a readable
    time, and nothing else narrows it. A statement that only carries the Sid (edited by hand: Allow, one
    action, another condition) cuts nothing, so it must never be taken for a deny."""
    try:
        statements = json.loads(document).get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Sid") == SESSION_DENY_SID:
                return _denied_before(statement)
    except (ValueError, TypeError, AttributeError):
        return None
    return None


def _everything(value: object) -> bool:
    return value in ("*", ["*"])


def _denied_before(statement: dict[str, object]) -> str | None:
    """The TokenIssueTime of a statement shaped exactly like session_deny_document's, else None."""
    if set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}:
        return None  # Principal, NotAction, NotResource: not the statement rotator writes
    if statement.get("Effect") != "Deny" or not _everything(statement.get("Action")) or not _everything(
            statement.get("Resource")):
        return None
    condition = statement.get("Condition")
    if not isinstance(condition, dict) or set(condition) != {"DateLessThan"}:
        return None  # another condition operator would narrow the deny
    before = condition["DateLessThan"]
    if not isinstance(before, dict) or set(before) != {"aws:TokenIssueTime"}:
        return None
    value = before["aws:TokenIssueTime"]
    if not isinstance(value, str) or parse_iso(value) is None:
        return None  # a time IAM cannot compare denies nothing rotator can vouch for
    return value


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime | None:
    """A time written by iso_seconds (or any ISO 8601 time; UTC when it names no zone); None if unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def next_whole_second(moment: datetime) -> datetime:
    """T0 is taken after the key is verified Inactive and rounded up, so every session the key could have
    minted was issued before it."""
    return datetime.fromtimestamp(math.floor(moment.timestamp()) + 1, UTC)


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
        still = iam.login_profile_created(user)  # read back: "deleted" is said only of what IAM no longer has
    except AwsError as exc:
        return Step("console login", StepStatus.FAILED, f"user {user}: {exc}")
    if still is not None:
        return Step("console login", StepStatus.FAILED,
                    f"{since}: DeleteLoginProfile answered, but GetLoginProfile still finds it: check with "
                    f"`aws iam get-login-profile --user-name {user}` and delete it by hand")
    return Step("console login", StepStatus.DONE,
                f"{since}: deleted (--disable-console; GetLoginProfile finds none)")
