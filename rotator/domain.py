"""Value objects and pure rules. Standard library only: no I/O, no SDKs, no clock reads."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

KEY_ID_PATTERN = re.compile(r"\A(AKIA|ASIA)[A-Z0-9]{16}\Z")
DURATION_PATTERN = re.compile(r"\A(\d+)(s|m|h|d)\Z")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def is_access_key_id(text: str) -> bool:
    """True for an AWS access key id: AKIA (long-lived) or ASIA (temporary) + 16 of [A-Z0-9]."""
    return bool(KEY_ID_PATTERN.match(text))


def is_temporary_key_id(key_id: str) -> bool:
    return key_id.startswith("ASIA")


def parse_duration(text: str) -> timedelta:
    """'90s' | '15m' | '1h' | '30d' → timedelta. Raises ValueError with the accepted forms."""
    match = DURATION_PATTERN.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a duration; write a whole number and a unit: '90s', '15m', '1h', '30d'")
    return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Secret:
    """A secret string that never shows itself in repr, str, logs or exceptions.

    Call ``reveal()`` only at the moment the value crosses into an SDK call.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values must not be pickled")


# --- AWS -----------------------------------------------------------------------------------------


class KeyStatus(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    status: KeyStatus
    created_at: datetime


@dataclass(frozen=True)
class NewAccessKey:
    key_id: str
    secret: Secret
    created_at: datetime


@dataclass(frozen=True)
class IamUser:
    name: str
    user_id: str  # immutable: a user recreated under the same name gets a new one
    arn: str


@dataclass(frozen=True)
class KeyLastUsed:
    key_id: str
    user_name: str | None
    last_used_at: datetime | None
    service: str | None
    region: str | None

    def describe(self) -> str:
        if self.last_used_at is None:
            return "never used"
        return (
            f"last used at {self.last_used_at.isoformat()} by service {self.service or '?'} "
            f"in region {self.region or '?'}"
        )


# --- GitLab ----------------------------------------------------------------------------------------


class ScopeKind(StrEnum):
    PROJECT = "project"
    GROUP = "group"
    INSTANCE = "instance"


@dataclass(frozen=True)
class TargetSpec:
    """One place in GitLab that holds a credential's key pair as two CI/CD variables."""

    kind: ScopeKind
    path: str | None  # project or group full path; None for the instance
    environment_scope: str = "*"
    access_key_id_var: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_var: str = "AWS_SECRET_ACCESS_KEY"
    create_missing: bool = False
    accept_masked_only: bool = False  # a GitLab before 17.4 may create the secret masked but not hidden

    @property
    def target_id(self) -> str:
        """Stable identity used in the journal and the store."""
        return f"{self.kind.value}:{self.path or ''}:{self.environment_scope}"

    @property
    def label(self) -> str:
        where = "instance" if self.kind is ScopeKind.INSTANCE else f"{self.kind.value} {self.path}"
        return f"{where} [environment_scope={self.environment_scope}]"

    def var(self, key: str) -> VarRef:
        return VarRef(self.kind, self.path, key, self.environment_scope)


@dataclass(frozen=True)
class VarRef:
    """Addresses exactly one CI/CD variable."""

    kind: ScopeKind
    path: str | None
    key: str
    environment_scope: str = "*"

    @property
    def label(self) -> str:
        where = "instance" if self.kind is ScopeKind.INSTANCE else f"{self.kind.value} {self.path}"
        return f"{where} variable {self.key} [environment_scope={self.environment_scope}]"


@dataclass(frozen=True)
class VariableWrite:
    """One write of one variable: a PUT of the value alone (GitLab keeps every flag), or, with ``create``, a
    POST with these flags."""

    ref: VarRef
    value: str | Secret
    create: bool = False
    masked: bool = True
    hidden: bool = False
    protected: bool = True


@dataclass(frozen=True)
class CiVariable:
    key: str
    value: str | None  # None when hidden: GitLab never returns a hidden value
    environment_scope: str = "*"
    masked: bool = False
    hidden: bool = False
    protected: bool = False
    raw: bool = False
    variable_type: str = "env_var"
    description: str | None = None


# GitLab releases whose behaviour rotator depends on.
# - filter[environment_scope] on a group variable update (PUT) arrived in GitLab 16.9 (docs: api/group_level_variables,
#   gitlab-org/gitlab MR 140874); before it a group PUT updates the first variable with the key, in any environment
#   scope (Ci::ChangeVariableService: container.variables.find_by!(key)). GET and DELETE honoured the filter already.
# - masked_and_hidden arrived with hidden variables in 17.4 (MR 141926, flag ci_hidden_variables); before it the
#   parameter is dropped and the variable is created masked but visible to the project's maintainers.
GROUP_FILTER_SINCE = (16, 9)
MASKED_AND_HIDDEN_SINCE = (17, 4)
_RELEASE = re.compile(r"\A\s*v?(\d+)\.(\d+)")


def gitlab_release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a GET /version answer such as "17.3.2-ee"; None when it is not of that form."""
    match = _RELEASE.match(version)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class GitLabCapabilities:
    """What one GitLab instance does for one token: its version (GET /version), the token's user
    (GET /user), the token's scopes (GET /personal_access_tokens/self) and whether admin endpoints answer.

    An administrator's token works as an administrator only in admin mode when the instance enables admin
    mode, and an API token is in admin mode only with the ``admin_mode`` scope (lib/api/api_guard.rb,
    bypass_session_for_admin_mode?); ``GET /user`` still says ``is_admin: true``, so only an admin endpoint
    that answers tells."""

    version: str
    username: str
    is_admin: bool = False
    admin_access: bool = False  # admin endpoints answer this token
    token_scopes: tuple[str, ...] | None = None  # None: not a personal access token, or GitLab would not say

    @property
    def release(self) -> tuple[int, int] | None:
        return gitlab_release(self.version)

    def _since(self, release: tuple[int, int]) -> bool:
        # An unreadable version is treated as an old one: rotator then refuses what it cannot prove safe.
        return self.release is not None and self.release >= release

    @property
    def group_filter(self) -> bool:
        """GitLab honours filter[environment_scope] when updating a group variable (GET and DELETE always did)."""
        return self._since(GROUP_FILTER_SINCE)

    @property
    def masked_and_hidden(self) -> bool:
        """GitLab can create a variable whose value it never shows again."""
        return self._since(MASKED_AND_HIDDEN_SINCE)

    @property
    def admin_mode_missing(self) -> bool:
        """An administrator's token that GitLab answers as a regular user's: admin mode is enabled on the
        instance and the token lacks the admin_mode scope."""
        return self.is_admin and not self.admin_access

    def admin_state(self) -> str:
        if not self.is_admin:
            return f"{self.username} is not an administrator"
        if self.admin_access:
            return f"{self.username} is an administrator and admin endpoints answer this token"
        return (f"{self.username} is an administrator, but admin endpoints refuse this token: admin mode is "
                "enabled and the token lacks the admin_mode scope")


# --- policy and credentials -----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    rotate_every: timedelta = timedelta(days=30)
    grace: timedelta = timedelta(hours=1)
    delete_after: timedelta = timedelta(days=7)
    verify_timeout: timedelta = timedelta(seconds=60)
    last_used_skew: timedelta = timedelta(minutes=5)
    window: str | None = None  # cron expression limiting when new rotations start
    jitter: timedelta = timedelta(0)


@dataclass(frozen=True)
class CredentialSpec:
    name: str
    iam_user: str
    account: str = "default"
    owners: tuple[str, ...] = ()
    policy: Policy = field(default_factory=Policy)
    targets: tuple[TargetSpec, ...] = ()


class CredentialState(StrEnum):
    OK = "ok"
    ROTATING = "rotating"
    HELD = "held"
    FAILED = "failed"
    BROKEN = "broken"  # a target holds half a pair (new secret, old key id): AWS rejects it until repaired


@dataclass(frozen=True)
class CredentialStatus:
    name: str
    state: CredentialState
    current_key_id: str | None = None
    key_created_at: datetime | None = None
    last_rotated_at: datetime | None = None
    next_due_at: datetime | None = None
    last_error: str | None = None
    updated_at: datetime | None = None
    retry_at: datetime | None = None  # a failure on an unreachable party: when it is tried again


# --- the rotation journal ---------------------------------------------------------------------------


class Phase(StrEnum):
    INTENT = "intent"  # user id and existing keys recorded; CreateAccessKey may or may not have happened
    CREATED = "created"  # new key id + sealed secret journaled
    VERIFIED = "verified"  # STS accepted the new pair
    PUBLISHED = "published"  # every target holds the new pair; secret wiped
    RETIRED = "retired"  # old key deactivated
    DONE = "done"  # old key deleted
    ROLLED_BACK = "rolled_back"  # what this rotation created was removed
    SUPERSEDED = "superseded"  # an incident took over; never rolled forward
    DISCARDED = "discarded"  # stale: nothing it refers to exists any more

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({Phase.DONE, Phase.ROLLED_BACK, Phase.SUPERSEDED, Phase.DISCARDED})


@dataclass(frozen=True)
class Journal:
    """One rotation of one credential, written before every outside step."""

    rotation_id: str
    credential: str
    account: str
    user_name: str
    user_id: str
    prior_key_ids: tuple[str, ...]  # every key the user had when the intent was written
    old_key_id: str | None  # the key this rotation replaces (None for a user with no key yet)
    phase: Phase
    started_at: datetime
    updated_at: datetime
    new_key_id: str | None = None
    sealed_secret: bytes | None = None
    targets_done: frozenset[str] = frozenset()
    published_at: datetime | None = None
    deactivated_at: datetime | None = None
    hold_reason: str | None = None
    held_at: datetime | None = None  # when the current hold began
    old_last_used_at: datetime | None = None  # the old key's LastUsedDate seen when retiring was held
    error: str | None = None
    broken_targets: frozenset[str] = frozenset()  # targets left with the new secret and the old key id


# --- history and incidents --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One outside action or decision; never carries a secret."""

    at: datetime
    actor: str
    action: str
    outcome: str
    credential: str | None = None
    key_ids: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyOwner:
    """What the store knows about who owns a key id."""

    key_id: str
    credential: str | None
    account: str
    user_name: str
    user_id: str | None = None
    minted_by: str | None = None  # a session key: the user's access key that minted it (GetSessionToken…)


@dataclass(frozen=True)
class Incident:
    """One compromised key's incident: contained at ``contained_at``, sessions issued before ``t0`` denied.

    It stays open (``closed_at`` None) until an audit has covered T0 plus CloudTrail's delivery delay;
    ``follow_up_at`` is when the service re-audits it next. ``sessions`` holds one entry per principal whose
    sessions were (or could not be) cut, as rotator.incident.sessions writes them.
    """

    incident_id: str
    key_id: str
    account: str | None
    user_name: str | None
    actor: str
    reason: str
    t0: datetime
    steps: Mapping[str, Any] = field(default_factory=dict)
    status: str = "open"
    credential: str | None = None
    report_markdown: str | None = None
    report_json: str | None = None
    slack_thread: str | None = None
    account_id: str | None = None
    role_name: str | None = None
    contained_at: datetime | None = None
    follow_up_at: datetime | None = None
    closed_at: datetime | None = None
    covered_until: datetime | None = None
    slack_channel: str | None = None
    sessions: tuple[Mapping[str, Any], ...] = ()

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


# --- pure rules -----------------------------------------------------------------------------------


def next_rotation_due(key_created_at: datetime | None, last_rotated_at: datetime | None,
                      policy: Policy) -> datetime | None:
    """When the credential's current key should be replaced, counted from the newer of the two dates."""
    anchor = max((d for d in (key_created_at, last_rotated_at) if d is not None), default=None)
    return None if anchor is None else anchor + policy.rotate_every


def is_due(key_created_at: datetime | None, last_rotated_at: datetime | None, policy: Policy,
           now: datetime) -> bool:
    due = next_rotation_due(key_created_at, last_rotated_at, policy)
    return due is None or due <= now


def newest_active(keys: Iterable[AccessKey]) -> AccessKey | None:
    active = [k for k in keys if k.status is KeyStatus.ACTIVE]
    return max(active, key=lambda k: k.created_at, default=None)


@dataclass(frozen=True)
class RoomDecision:
    """What to do when the user must have a free key slot before CreateAccessKey."""

    delete_key_id: str | None
    hold_reason: str | None


def decide_room(keys: Iterable[AccessKey], referenced: set[str], replaced: set[str],
                unknown_references: bool) -> RoomDecision:
    """Pick a key to delete so a new one fits, or explain why a human must act.

    A key may go only if it is Inactive, no target holds it, and the journal proves it was replaced.
    ``unknown_references`` is True when some target's key-id variable could not be read (hidden):
    then nothing is provably unreferenced.
    """
    keys = list(keys)
    candidates = [
        k for k in keys
        if k.status is KeyStatus.INACTIVE and k.key_id not in referenced and k.key_id in replaced
    ]
    if candidates and not unknown_references:
        oldest = min(candidates, key=lambda k: k.created_at)
        return RoomDecision(oldest.key_id, None)
    described = ", ".join(f"{k.key_id} ({k.status.value})" for k in keys)
    if unknown_references:
        why = "a target's key-id variable is hidden, so no key can be proven unreferenced"
    elif any(k.status is KeyStatus.INACTIVE for k in keys):
        why = ("the Inactive key cannot be proven replaced (a target still holds it, targets disagree, or it is "
               "evidence of an incident)")
    else:
        why = "both keys are Active"
    return RoomDecision(
        None,
        f"the user already has the maximum number of access keys [{described}]: {why}. "
        "A human must confirm which key is unused, deactivate and delete it, then run `rotator rotate` again",
    )


def provably_replaced(journals: Iterable[Journal], user_id: str, held_by_targets: Iterable[str | None],
                      keys: Iterable[AccessKey], evidence: Iterable[str]) -> set[str]:
    """The keys of a user that something newer provably replaced, so making room may delete them.

    A key is replaced when a published rotation of this very user (same immutable UserId) moved away from
    it, or when every target is readable and holds the same Active key (each target has moved past every
    other key). ``held_by_targets`` has one entry per target: the key id it holds, None when unreadable or
    missing. A key named in an incident (``evidence``) is never replaced: a human decides about it.
    """
    replaced = {
        j.old_key_id for j in journals
        if j.old_key_id and j.user_id == user_id and (
            j.phase in (Phase.PUBLISHED, Phase.RETIRED, Phase.DONE)
            # An incident superseded it after every target held the new key: its old key was replaced all
            # the same (the journal says so), even though the rotation will never retire it itself.
            or (j.phase is Phase.SUPERSEDED and j.published_at is not None))
    }
    keys = list(keys)
    held = set(held_by_targets)
    if len(held) == 1 and None not in held:
        current = next((k for k in keys if k.key_id in held and k.status is KeyStatus.ACTIVE), None)
        if current is not None:
            replaced |= {k.key_id for k in keys if k.key_id != current.key_id}
    return replaced - set(evidence)
