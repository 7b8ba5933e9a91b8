"""The ports use cases are written against. Adapters implement them; tests pass small fakes.

Contract shared by every port: an adapter is dumb and raises a typed ``rotator.errors`` error when it
cannot finish. It never turns AccessDenied into "no keys" or a 403 into "no variable".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from rotator.domain import (
    AccessKey,
    CiVariable,
    CredentialSpec,
    CredentialState,
    CredentialStatus,
    Event,
    GitLabCapabilities,
    IamUser,
    Incident,
    Journal,
    KeyLastUsed,
    KeyOwner,
    NewAccessKey,
    ScopeKind,
    Secret,
    VariableWrite,
    VarRef,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        ...

    def sleep(self, seconds: float) -> None: ...


class Iam(Protocol):
    """IAM of one AWS account."""

    def get_user(self, user_name: str) -> IamUser:
        """Raises AwsNotFound when the user does not exist."""
        ...

    def list_access_keys(self, user_name: str) -> list[AccessKey]: ...

    def create_access_key(self, user_name: str) -> NewAccessKey:
        """Raises AwsLimitExceeded when the user has no free key slot."""
        ...

    def set_access_key_status(self, user_name: str, key_id: str, *, active: bool) -> None: ...

    def delete_access_key(self, user_name: str, key_id: str) -> None:
        """Idempotent: a key that is already gone is not an error."""
        ...

    def get_access_key_last_used(self, key_id: str) -> KeyLastUsed: ...


class Sts(Protocol):
    def caller_arn(self, key: NewAccessKey) -> str | None:
        """GetCallerIdentity signed with ``key``. None while AWS does not accept the pair yet.

        Throttling raises AwsThrottled: it never means "key invalid".
        """
        ...


class SecretSealer(Protocol):
    """Envelope encryption of the one secret the journal may hold."""

    def seal(self, secret: Secret) -> bytes: ...

    def open(self, sealed: bytes) -> Secret: ...


class CiVariables(Protocol):
    """GitLab CI/CD variables at project, group or instance level.

    Every call returns the variable as GitLab's answer describes it (environment_scope, masked, protected,
    hidden, and the value unless hidden), never as it was asked for: GitLab may apply a request to another
    variable than the one addressed (old versions ignore the group filter; a group PUT whose filter matches
    nothing falls back to the key in any scope), and the caller checks what it got.
    """

    def capabilities(self) -> GitLabCapabilities:
        """What this GitLab does for this token (version, group filter, masked_and_hidden, admin access),
        probed once and kept for a day. Raises a GitLabError when GitLab cannot be asked."""
        ...

    def get(self, ref: VarRef) -> CiVariable | None:
        """The variable, or None when GitLab answers '404 Variable Not Found'.

        Always filtered by environment_scope. 409, 403 and a missing project/group raise.
        """
        ...

    def list(self, kind: ScopeKind, path: str | None) -> list[CiVariable]: ...

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        """PUT only the value (every flag is kept), with filter[environment_scope]."""
        ...

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        """POST a new variable; ``hidden`` asks for masked_and_hidden, which GitLab before 17.4 drops."""
        ...

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        """Two writes back to back: nothing (no rate-limit wait, no Retry-After) comes between them. A transient
        failure of the second is retried at once; when it still fails, GitLabPairSplit says the first was
        written. A failure of the first raises its own error: then neither was written by this call.
        ``accept_first`` checks GitLab's answer to the first write (no I/O); what it raises stops the pair
        before the second write."""
        ...

    def delete(self, ref: VarRef) -> bool:
        """DELETE with filter[environment_scope]; False when the variable was already gone."""
        ...


class Notifier(Protocol):
    def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
             thread: str | None = None) -> str | None:
        """Post a message (Block Kit + text fallback). Returns a thread reference when there is one.

        Raises SlackError; callers decide whether that matters (it never undoes a rotation or containment).
        """
        ...


@dataclass(frozen=True)
class LeaseFence:
    """One tenure of a lease: whoever holds ``token`` of lease ``name`` may write; a later tenure fences it out."""

    name: str
    holder: str
    token: int
    ttl: timedelta


class Store(Protocol):
    """Durable state: credentials, the rotation journal, history, incidents, leases.

    Leases are judged by the database's clock, in the statement that takes or checks them, so replicas whose
    clocks disagree still agree on who holds a lease."""

    def fenced(self, fence: LeaseFence) -> Store:
        """This store, with every write first checking (and extending), in the same transaction, that ``fence``
        is still the current tenure of its lease; when it is not, the write raises LeaseLost and changes
        nothing."""
        ...

    # credentials ------------------------------------------------------------------------------------
    def sync_credentials(self, specs: Sequence[CredentialSpec], now: datetime) -> None:
        """Upsert credentials and their targets from config; credentials no longer configured are kept
        (history refers to them) but marked unconfigured."""
        ...

    def get_status(self, name: str) -> CredentialStatus | None: ...

    def list_statuses(self) -> list[CredentialStatus]: ...

    def set_status(self, name: str, state: CredentialState, now: datetime, *,
                   current_key_id: str | None = None, key_created_at: datetime | None = None,
                   last_rotated_at: datetime | None = None, next_due_at: datetime | None = None,
                   last_error: str | None = None) -> None:
        """Update the state. Optional fields left at None keep their stored value, except last_error,
        which is always overwritten (None clears it)."""
        ...

    # journal ----------------------------------------------------------------------------------------
    def open_journal(self, credential: str) -> Journal | None:
        """The unfinished rotation of a credential, if any (at most one exists)."""
        ...

    def save_journal(self, journal: Journal) -> None:
        """Insert or update by rotation_id, durably, before returning."""
        ...

    def journals(self, credential: str) -> list[Journal]:
        """Every rotation of a credential, oldest first."""
        ...

    def journals_with_key(self, key_id: str) -> list[Journal]:
        """Rotations whose old or new key is ``key_id``."""
        ...

    # keys and history -------------------------------------------------------------------------------
    def remember_key(self, owner: KeyOwner, now: datetime, *, status: str,
                     created_at: datetime | None = None) -> None: ...

    def key_owner(self, key_id: str) -> KeyOwner | None: ...

    def append_event(self, event: Event) -> None: ...

    def events(self, credential: str | None = None, limit: int = 100) -> list[Event]:
        """Newest first."""
        ...

    # incidents --------------------------------------------------------------------------------------
    def save_incident(self, incident: Incident) -> None: ...

    def incidents_for_key(self, key_id: str) -> list[Incident]: ...

    # leases -----------------------------------------------------------------------------------------
    def try_acquire_lease(self, name: str, holder: str, ttl: timedelta) -> int | None:
        """One atomic conditional UPDATE/INSERT: succeeds when free, expired, or already ours. Returns the
        fencing token of the tenure (it grows with every new tenure), None when another holder has it."""
        ...

    def renew_lease(self, fence: LeaseFence) -> bool:
        """Extend the tenure ``fence`` names; False when it is over (expired, taken over, preempted)."""
        ...

    def lease_is_current(self, fence: LeaseFence) -> bool:
        """Is ``fence`` still the current, unexpired tenure? A read: nothing is extended or locked."""
        ...

    def release_lease(self, name: str, holder: str) -> None: ...

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """(holder, expires_at by the database's clock) of a lease that was not released."""
        ...

    def expire_lease(self, name: str) -> None:
        """End the current tenure now, whoever holds it (incidents, dead local holders)."""
        ...


class KeyDirectory(Protocol):
    """Which AWS account an access key id belongs to, asked with the ambient credentials."""

    def account_of_key(self, key_id: str) -> str:
        """sts:GetAccessKeyInfo: the 12-digit account id. Works for AKIA and ASIA ids of any account."""
        ...

    def ambient_account(self) -> str:
        """sts:GetCallerIdentity of the ambient credentials: the account rotator itself runs in."""
        ...
