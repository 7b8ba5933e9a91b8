"""Small in-memory fakes of rotator's ports, for unit tests of the use cases.

They behave like the real parties where the protocol depends on it: IAM's two-key limit raises
LimitExceeded, STS accepts a key only after a propagation delay, GitLab hides hidden values, and an older
GitLab version (FakeCiVariables.gitlab) ignores the group filter or drops masked_and_hidden as GitLab does.
Each fake counts the calls a test may want to assert on, and can be told to fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

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
    KeyStatus,
    NewAccessKey,
    ScopeKind,
    Secret,
    VariableWrite,
    VarRef,
)
from rotator.errors import (
    AwsLimitExceeded,
    AwsNotFound,
    GitLabAmbiguousScope,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabPairSplit,
    GitLabUnavailable,
    LeaseLost,
    SlackError,
    SlackUnavailable,
)
from rotator.ports import LeaseFence
from rotator.service.ports import QueuedNotification

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MODERN_GITLAB = GitLabCapabilities(version="17.6.1-ee", username="rotator-bot", is_admin=True, admin_access=True,
                                   token_scopes=("api", "admin_mode"))


class Crash(BaseException):
    """Simulates SIGKILL at an exact point: not an Exception, so nothing in rotator can catch it."""


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self._now = now
        self.slept = 0.0

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self._now += timedelta(seconds=seconds)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@dataclass
class _Key:
    key_id: str
    secret: str
    status: KeyStatus
    created_at: datetime
    last_used: KeyLastUsed | None = None


class FakeIam:
    LIMIT = 2

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.users: dict[str, IamUser] = {}
        self.keys: dict[str, list[_Key]] = {}
        self.calls: list[str] = []
        self.max_keys_seen = 0
        self._ids = itertools.count(1)
        # name of an operation -> a callable raising what the test wants, once per call
        self.fail: dict[str, Callable[[], None]] = {}
        self.crash_after: str | None = None

    def add_user(self, name: str, *, keys: int = 1) -> IamUser:
        user = IamUser(name, f"AIDA{next(self._ids):016d}", f"arn:aws:iam::123456789012:user/{name}")
        self.users[name] = user
        self.keys[name] = []
        for _ in range(keys):
            self._new_key(name)
        return user

    def recreate_user(self, name: str) -> IamUser:
        self.keys.pop(name, None)
        return self.add_user(name, keys=1)

    def _new_key(self, name: str) -> _Key:
        n = next(self._ids)
        key = _Key(f"AKIA{n:016d}", f"secret-{n:034d}", KeyStatus.ACTIVE, self.clock.now())
        self.keys[name].append(key)
        self.max_keys_seen = max(self.max_keys_seen, len(self.keys[name]))
        self.clock.advance(timedelta(seconds=1))  # distinct creation times
        return key

    def _call(self, op: str) -> None:
        self.calls.append(op)
        if op in self.fail:
            self.fail[op]()

    def _after(self, op: str) -> None:
        if self.crash_after == op:
            self.crash_after = None
            raise Crash(op)

    def key(self, key_id: str) -> _Key:
        return next(k for keys in self.keys.values() for k in keys if k.key_id == key_id)

    def key_ids(self, user: str) -> list[str]:
        return [k.key_id for k in self.keys[user]]

    # --- ports.Iam ---
    def get_user(self, user_name: str) -> IamUser:
        self._call("GetUser")
        if user_name not in self.users:
            raise AwsNotFound(f"no user {user_name}", code="NoSuchEntity")
        return self.users[user_name]

    def list_access_keys(self, user_name: str) -> list[AccessKey]:
        self._call("ListAccessKeys")
        return [AccessKey(k.key_id, k.status, k.created_at) for k in self.keys[user_name]]

    def create_access_key(self, user_name: str) -> NewAccessKey:
        self._call("CreateAccessKey")
        if len(self.keys[user_name]) >= self.LIMIT:
            raise AwsLimitExceeded("Cannot exceed quota for AccessKeysPerUser: 2", code="LimitExceeded")
        key = self._new_key(user_name)
        self._after("CreateAccessKey")
        return NewAccessKey(key.key_id, Secret(key.secret), key.created_at)

    def set_access_key_status(self, user_name: str, key_id: str, *, active: bool) -> None:
        self._call("UpdateAccessKey")
        self.key(key_id).status = KeyStatus.ACTIVE if active else KeyStatus.INACTIVE
        self._after("UpdateAccessKey")

    def delete_access_key(self, user_name: str, key_id: str) -> None:
        self._call("DeleteAccessKey")
        self.keys[user_name] = [k for k in self.keys[user_name] if k.key_id != key_id]
        self._after("DeleteAccessKey")

    def get_access_key_last_used(self, key_id: str) -> KeyLastUsed:
        self._call("GetAccessKeyLastUsed")
        key = self.key(key_id)
        return key.last_used or KeyLastUsed(key_id, None, None, None, None)

    def use_key(self, key_id: str, *, service: str = "s3", region: str = "eu-west-1") -> None:
        self.key(key_id).last_used = KeyLastUsed(key_id, None, self.clock.now(), service, region)

    def accepts(self, key_id: str, secret: str) -> bool:
        try:
            key = self.key(key_id)
        except StopIteration:
            return False
        return key.status is KeyStatus.ACTIVE and key.secret == secret


class FakeSts:
    def __init__(self, iam: FakeIam, clock: FakeClock, *, delay: timedelta = timedelta(seconds=3)) -> None:
        self.iam = iam
        self.clock = clock
        self.delay = delay
        self.never = False
        self.calls = 0
        self.fail: Callable[[], None] | None = None

    def caller_arn(self, key: NewAccessKey) -> str | None:
        self.calls += 1
        if self.fail is not None:
            self.fail()
        if self.never or not self.iam.accepts(key.key_id, key.secret.reveal()):
            return None
        stored = self.iam.key(key.key_id)
        if self.clock.now() < stored.created_at + self.delay:
            return None
        owner = next(u for u, keys in self.iam.keys.items() if stored in keys)
        return self.iam.users[owner].arn


class FakeSealer:
    def seal(self, secret: Secret) -> bytes:
        return b"sealed:" + secret.reveal()[::-1].encode()

    def open(self, sealed: bytes) -> Secret:
        return Secret(sealed[len(b"sealed:"):].decode()[::-1])


@dataclass
class _Var:
    variable: CiVariable


class FakeCiVariables:
    def __init__(self) -> None:
        self.vars: dict[tuple[ScopeKind, str | None, str, str], CiVariable] = {}
        self.writes: list[str] = []
        self.deleted: list[VarRef] = []
        self.forbidden: set[tuple[ScopeKind, str | None]] = set()
        self.forbidden_writes: set[tuple[ScopeKind, str | None]] = set()
        self.ambiguous: set[tuple[ScopeKind, str | None, str]] = set()
        self.crash_after_write: int | None = None
        # One variable refused (403), after letting this many writes to it through (0: refused every time).
        self.refuse_variable: dict[tuple[ScopeKind, str | None, str], int] = {}
        self.pairs: list[tuple[str, str]] = []  # (first, second) of every write_pair
        self.unreachable = False  # GitLab does not answer (connection refused after the retry budget)
        # What capabilities() answers; its version also decides how the fake behaves, as GitLab's would:
        # before 16.9 a group PUT takes the first variable with the key in any scope, and before 17.4
        # masked_and_hidden is dropped (the variable is created masked but visible).
        self.gitlab = MODERN_GITLAB
        self.probes = 0
        self.before_write: Callable[[VarRef], None] | None = None  # a concurrent writer, between read and write

    def capabilities(self) -> GitLabCapabilities:
        self.probes += 1
        if self.unreachable:
            raise GitLabUnavailable("GET /version: cannot reach GitLab at gitlab.example.com: connection refused")
        return self.gitlab

    def seed(self, kind: ScopeKind, path: str | None, key: str, value: str, *, scope: str = "*",
             hidden: bool = False, masked: bool = True, protected: bool = True) -> None:
        self.vars[(kind, path, key, scope)] = CiVariable(key, value, scope, masked=masked or hidden, hidden=hidden,
                                                        protected=protected)

    def value(self, kind: ScopeKind, path: str | None, key: str, scope: str = "*") -> str:
        return self.vars[(kind, path, key, scope)].value or ""

    def _check(self, ref: VarRef) -> None:
        if self.unreachable:
            raise GitLabUnavailable(f"{ref.label}: cannot reach GitLab at gitlab.example.com: connection refused",
                                    target=ref.label)
        if (ref.kind, ref.path) in self.forbidden:
            raise GitLabForbidden(f"{ref.label}: GitLab answered 403: 403 Forbidden", target=ref.label, status=403)
        if (ref.kind, ref.path, ref.key) in self.ambiguous:
            raise GitLabAmbiguousScope(f"{ref.label}: GitLab answered 409: multiple variables", target=ref.label,
                                       status=409)

    def _shown(self, var: CiVariable) -> CiVariable:
        return replace(var, value=None) if var.hidden else var

    def _find(self, ref: VarRef, *, put: bool = False) -> tuple[ScopeKind, str | None, str, str] | None:
        """GitLab's lookup: the exact scope, except for a group PUT (``put``) before 16.9, or one whose filter
        matches nothing: that takes the first variable with the key in any scope."""
        exact = (ref.kind, ref.path, ref.key, ref.environment_scope)
        if ref.kind is ScopeKind.GROUP and put and (not self.gitlab.group_filter or exact not in self.vars):
            return next((k for k in self.vars if k[:3] == exact[:3]), None)
        return exact if exact in self.vars else None

    def get(self, ref: VarRef) -> CiVariable | None:
        self._check(ref)
        found = self._find(ref)
        return None if found is None else self._shown(self.vars[found])

    def list(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        return [self._shown(v) for (k, p, _, _), v in self.vars.items() if k is kind and p == path]

    def _written(self, ref: VarRef) -> None:
        self.writes.append(ref.key)
        if self.crash_after_write is not None:
            self.crash_after_write -= 1
            if self.crash_after_write == 0:
                self.crash_after_write = None
                raise Crash(f"after writing {ref.key}")

    def _check_write(self, ref: VarRef) -> None:
        if (ref.kind, ref.path) in self.forbidden_writes:
            raise GitLabForbidden(f"{ref.label}: GitLab answered 403: 403 Forbidden", target=ref.label, status=403)
        allowed = self.refuse_variable.get((ref.kind, ref.path, ref.key))
        if allowed is not None:
            if allowed <= 0:
                raise GitLabForbidden(f"{ref.label}: GitLab answered 403: 403 Forbidden", target=ref.label,
                                      status=403)
            self.refuse_variable[(ref.kind, ref.path, ref.key)] = allowed - 1

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        self.pairs.append((first.ref.key, second.ref.key))
        written = self._write(first)
        if accept_first is not None:
            accept_first(written)
        try:
            return written, self._write(second)
        except GitLabError as exc:
            raise GitLabPairSplit(f"{second.ref.label}: not written ({exc.message})", written=first.ref.label,
                                  failure=exc) from None

    def _write(self, write: VariableWrite) -> CiVariable:
        if write.create:
            return self.create(write.ref, write.value, masked=write.masked, hidden=write.hidden,
                               protected=write.protected)
        return self.update_value(write.ref, write.value)

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        self._check(ref)
        self._check_write(ref)
        if self.before_write is not None:
            self.before_write(ref)
        key = self._find(ref, put=True)
        if key is None:
            raise GitLabNotFound(f"{ref.label}: GitLab answered 404: 404 Variable Not Found", target=ref.label,
                                 status=404)
        raw = value.reveal() if isinstance(value, Secret) else value
        self.vars[key] = replace(self.vars[key], value=raw)
        self._written(ref)
        return self._shown(self.vars[key])

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        self._check(ref)
        self._check_write(ref)
        if self.before_write is not None:
            self.before_write(ref)
        raw = value.reveal() if isinstance(value, Secret) else value
        hidden = hidden and self.gitlab.masked_and_hidden
        var = CiVariable(ref.key, raw, ref.environment_scope, masked=masked or hidden, hidden=hidden,
                         protected=protected)
        self.vars[(ref.kind, ref.path, ref.key, ref.environment_scope)] = var
        self._written(ref)
        return self._shown(var)

    def delete(self, ref: VarRef) -> bool:
        self._check(ref)
        found = self._find(ref)
        if found is None:
            return False
        del self.vars[found]
        self.deleted.append(ref)
        return True


@dataclass
class Posted:
    channel: str
    title: str
    lines: list[str]
    severity: str
    thread: str | None


class FakeNotifier:
    def __init__(self) -> None:
        self.posted: list[Posted] = []
        self.down = False  # Slack refuses (SlackError)
        self.unreachable = False  # Slack does not answer (SlackUnavailable)
        self.attempts = 0

    def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
             thread: str | None = None) -> str | None:
        self.attempts += 1
        if self.unreachable:
            raise SlackUnavailable("cannot reach Slack: connection refused")
        if self.down:
            raise SlackError("Slack is down")
        self.posted.append(Posted(channel, title, list(lines), severity, thread))
        return f"{len(self.posted)}.000"


@dataclass
class _Lease:
    holder: str | None
    expires_at: datetime
    token: int


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeStore:
    """Leases are judged by ``db_now`` (the database's clock), never by a time the caller passes."""

    statuses: dict[str, CredentialStatus] = field(default_factory=dict)
    journal_rows: dict[str, Journal] = field(default_factory=dict)
    event_rows: list[Event] = field(default_factory=list)
    keys: dict[str, KeyOwner] = field(default_factory=dict)
    incident_rows: dict[str, Incident] = field(default_factory=dict)
    leases: dict[str, _Lease] = field(default_factory=dict)
    outbox_rows: list[QueuedNotification] = field(default_factory=list)
    db_now: Callable[[], datetime] = _wall_clock
    fence: LeaseFence | None = None
    fenced_out: int = 0  # writes refused because their tenure was over

    def fenced(self, fence: LeaseFence) -> FakeStore:
        return replace(self, fence=fence)  # the same dicts: a view of the same store

    def _write(self) -> None:
        if self.fence is not None and not self.renew_lease(self.fence):
            self.fenced_out += 1
            raise LeaseLost(f"lease {self.fence.name} is no longer ours (token {self.fence.token})")

    def sync_credentials(self, specs: Sequence[CredentialSpec], now: datetime) -> None:
        for spec in specs:
            self.statuses.setdefault(spec.name, CredentialStatus(spec.name, CredentialState.OK, updated_at=now))

    def get_status(self, name: str) -> CredentialStatus | None:
        return self.statuses.get(name)

    def list_statuses(self) -> list[CredentialStatus]:
        return list(self.statuses.values())

    def set_status(self, name: str, state: CredentialState, now: datetime, *, current_key_id: str | None = None,
                   key_created_at: datetime | None = None, last_rotated_at: datetime | None = None,
                   next_due_at: datetime | None = None, last_error: str | None = None) -> None:
        self._write()
        old = self.statuses.get(name) or CredentialStatus(name, state)
        self.statuses[name] = CredentialStatus(
            name, state, current_key_id or old.current_key_id, key_created_at or old.key_created_at,
            last_rotated_at or old.last_rotated_at, next_due_at or old.next_due_at, last_error, now)

    def open_journal(self, credential: str) -> Journal | None:
        return next((j for j in self.journal_rows.values()
                     if j.credential == credential and not j.phase.finished), None)

    def save_journal(self, journal: Journal) -> None:
        self._write()
        self.journal_rows[journal.rotation_id] = journal

    def journals(self, credential: str) -> list[Journal]:
        return sorted((j for j in self.journal_rows.values() if j.credential == credential),
                      key=lambda j: j.started_at)

    def journals_with_key(self, key_id: str) -> list[Journal]:
        return [j for j in self.journal_rows.values() if key_id in (j.old_key_id, j.new_key_id)]

    def remember_key(self, owner: KeyOwner, now: datetime, *, status: str, created_at: datetime | None = None) -> None:
        self._write()
        self.keys[owner.key_id] = owner

    def key_owner(self, key_id: str) -> KeyOwner | None:
        return self.keys.get(key_id)

    def append_event(self, event: Event) -> None:
        self._write()
        self.event_rows.append(event)

    def events(self, credential: str | None = None, limit: int = 100) -> list[Event]:
        rows = [e for e in reversed(self.event_rows) if credential in (None, e.credential)]
        return rows[:limit]

    def save_incident(self, incident: Incident) -> None:
        self.incident_rows[incident.incident_id] = incident

    def incidents_for_key(self, key_id: str) -> list[Incident]:
        return [i for i in self.incident_rows.values() if i.key_id == key_id]

    def list_incidents(self, limit: int = 1000) -> list[Incident]:
        newest_first = sorted(self.incident_rows.values(), key=lambda i: (i.t0, i.incident_id), reverse=True)
        return sorted(newest_first, key=lambda i: not i.is_open)[:limit]

    def try_acquire_lease(self, name: str, holder: str, ttl: timedelta) -> int | None:
        now = self.db_now()
        current = self.leases.get(name)
        if current is None:
            self.leases[name] = _Lease(holder, now + ttl, 1)
            return 1
        if current.holder == holder and current.expires_at >= now:
            current.expires_at = now + ttl
            return current.token
        if current.holder is None or current.holder == holder or current.expires_at < now:
            self.leases[name] = _Lease(holder, now + ttl, current.token + 1)
            return current.token + 1
        return None

    def renew_lease(self, fence: LeaseFence) -> bool:
        current = self.leases.get(fence.name)
        now = self.db_now()
        if current is None or current.expires_at < now:
            return False
        if (current.holder, current.token) != (fence.holder, fence.token):
            return False
        current.expires_at = now + fence.ttl
        return True

    def lease_is_current(self, fence: LeaseFence) -> bool:
        current = self.leases.get(fence.name)
        return (current is not None and current.expires_at >= self.db_now()
                and (current.holder, current.token) == (fence.holder, fence.token))

    def release_lease(self, name: str, holder: str) -> None:
        current = self.leases.get(name)
        if current is not None and current.holder == holder:
            current.holder = None

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        current = self.leases.get(name)
        return None if current is None or current.holder is None else (current.holder, current.expires_at)

    def queue_notification(self, message: QueuedNotification) -> None:
        next_id = max((m.id or 0 for m in self.outbox_rows), default=0) + 1
        self.outbox_rows.append(replace(message, id=next_id))

    def queued_notifications(self, limit: int = 100) -> list[QueuedNotification]:
        return sorted(self.outbox_rows, key=lambda m: (m.queued_at, m.id or 0))[:limit]

    def queued_count(self) -> int:
        return len(self.outbox_rows)

    def notification_delivered(self, message_id: int) -> None:
        self.outbox_rows = [m for m in self.outbox_rows if m.id != message_id]

    def notification_failed(self, message_id: int, error: str) -> None:
        self.outbox_rows = [replace(m, attempts=m.attempts + 1, last_error=error) if m.id == message_id else m
                            for m in self.outbox_rows]

    def expire_lease(self, name: str) -> None:
        if name in self.leases:
            self.leases[name].expires_at = datetime.min.replace(tzinfo=UTC)
