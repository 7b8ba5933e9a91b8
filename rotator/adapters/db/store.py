"""SqlStore: the ports.Store on SQLAlchemy, for SQLite (one host) and PostgreSQL (several replicas).

One SqlStore may be shared by the threads of a pool: every method takes its own pooled connection and
commits before returning. Several processes may share one database: writes are single atomic statements
or short transactions that take the write lock first (SQLite) or rely on row locks (PostgreSQL).

Leases are judged by the database's clock inside the statement that takes, renews or checks them
(SQLite ``strftime('now')``, PostgreSQL ``statement_timestamp()``), never by the caller's: replicas on hosts
whose clocks differ still agree. A fenced view (``fenced``) starts every write transaction by extending its
tenure, which succeeds only while that tenure is the current one; on PostgreSQL the row lock that UPDATE
takes is held until the write commits, so a takeover cannot slip in between the check and the write.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Table, and_, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from rotator.adapters.db.engine import WRITE_INTENT, make_engine, store_error
from rotator.adapters.db.migrate import (
    current_revision,
    downgrade_to,
    ensure_at_head,
    head_revision,
    migrations_dir,
    upgrade_to_head,
)
from rotator.adapters.db.models import (
    UNFINISHED_PHASES,
    CredentialRow,
    EventRow,
    IncidentRow,
    JournalRow,
    KeySeenRow,
    LeaseRow,
    OutboxRow,
    TargetRow,
    incident_from_row,
    incident_values,
    journal_from_row,
    journal_values,
    metadata,
    status_from_row,
)
from rotator.domain import (
    CredentialSpec,
    CredentialState,
    CredentialStatus,
    Event,
    Incident,
    Journal,
    KeyOwner,
    next_rotation_due,
)
from rotator.errors import LeaseLost, StoreError
from rotator.logs import redact_url
from rotator.ports import LeaseFence
from rotator.service.ports import QueuedNotification

__all__ = [
    "SqlStore",
    "current_revision",
    "downgrade_to",
    "ensure_at_head",
    "head_revision",
    "make_engine",
    "metadata",
    "migrations_dir",
    "upgrade_to_head",
]

# What expire_lease writes: earlier than any `now`, so the lease counts as expired for everyone.
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
# SQLite's own clock, in the text form SQLAlchemy stores DateTime columns in ("YYYY-MM-DD HH:MM:SS.ffffff",
# UTC): %f is "SS.SSS", so three zeros make the microseconds. Equal formats compare correctly as text.
_SQLITE_NOW_FORMAT = "%Y-%m-%d %H:%M:%f000"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


class SqlStore:
    """ports.Store backed by a SQLAlchemy engine from ``make_engine``."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utc_now) -> None:
        # ``clock`` only stamps bookkeeping columns (incidents.created_at/updated_at) that the port's
        # methods do not pass a time for. Leases use the database's clock.
        self._engine = engine
        self._clock = clock
        self._fence: LeaseFence | None = None
        # SQLite lets one writer in at a time; a thread that finds the file locked waits in SQLite's busy
        # handler, which sleeps in growing steps (up to 100 ms) and so wakes late: with a pool of workers,
        # writes convoy behind those sleeps. The threads of this process queue on a lock instead, and are
        # woken the moment the writer before them commits (other processes still meet busy_timeout).
        self._write_lock: threading.Lock | None = threading.Lock() if engine.dialect.name == "sqlite" else None

    def fenced(self, fence: LeaseFence) -> SqlStore:
        """The same store (same engine and pool) whose every write first proves ``fence`` is current."""
        view = copy.copy(self)
        view._fence = fence
        return view

    @classmethod
    def from_url(cls, url: str, *, require_current_schema: bool = True) -> SqlStore:
        """Open the database; by default refuse (SchemaNotCurrent) one not migrated to head."""
        engine = make_engine(url)
        if require_current_schema:
            try:
                ensure_at_head(engine)
            except StoreError:
                engine.dispose()
                raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _session(self, doing: str, *, write: bool = False) -> Iterator[Session]:
        """One transaction, committed on success; SQLAlchemy errors become StoreError."""
        serialize = self._write_lock if write and self._write_lock is not None else contextlib.nullcontext()
        try:
            with serialize, self._engine.connect() as connection:
                if write:
                    connection.execution_options(**WRITE_INTENT)
                with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                    if write and self._fence is not None and not self._extend(session, self._fence):
                        raise LeaseLost(f"lease {self._fence.name} is no longer ours (token {self._fence.token}): "
                                        f"{doing} was not done",
                                        hint="nothing to do: the current holder continues from the journal")
                    yield session
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, doing, exc) from exc

    # The database's clock, as SQL: leases are judged by it alone.
    def _db_now(self) -> ColumnElement[Any]:
        if self._engine.dialect.name == "sqlite":
            return func.strftime(_SQLITE_NOW_FORMAT, literal("now"))
        return func.statement_timestamp()

    def _db_in(self, ttl: timedelta) -> ColumnElement[Any]:
        if self._engine.dialect.name == "sqlite":
            return func.strftime(_SQLITE_NOW_FORMAT, literal("now"), literal(f"+{ttl.total_seconds():.6f} seconds"))
        return func.statement_timestamp() + literal(ttl)

    def _extend(self, session: Session, fence: LeaseFence) -> bool:
        """Extend the tenure ``fence`` names, by the database's clock; False when it is not current."""
        extended = session.connection().execute(
            update(LeaseRow)
            .where(LeaseRow.name == fence.name, LeaseRow.holder == fence.holder, LeaseRow.token == fence.token,
                   LeaseRow.expires_at >= self._db_now())
            .values(expires_at=self._db_in(fence.ttl))).rowcount
        return bool(extended == 1)

    def _insert(self, session: Session, model: type[Any]) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (SQLite >= 3.24 and PostgreSQL both do)."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            return postgresql.insert(_table(model))
        if dialect == "sqlite":
            return sqlite.insert(_table(model))
        raise StoreError(f"unsupported database {dialect!r} at {redact_url(str(self._engine.url))}",
                         hint="use SQLite or PostgreSQL")

    # credentials ----------------------------------------------------------------------------------------

    def sync_credentials(self, specs: Sequence[CredentialSpec], now: datetime) -> None:
        names = [spec.name for spec in specs]
        with self._session("syncing credentials from config", write=True) as session:
            connection = session.connection()
            for spec in specs:
                insert = self._insert(session, CredentialRow).values(
                    name=spec.name, iam_user=spec.iam_user, account=spec.account, owners=list(spec.owners),
                    configured=True, state=CredentialState.OK.value, updated_at=now,
                )
                connection.execute(insert.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"iam_user": insert.excluded.iam_user, "account": insert.excluded.account,
                          "owners": insert.excluded.owners, "configured": True},
                ))
                self._sync_targets(session, spec)
            unconfigured = update(CredentialRow).where(CredentialRow.configured.is_(True))
            if names:
                unconfigured = unconfigured.where(CredentialRow.name.not_in(names))
            connection.execute(unconfigured.values(configured=False, updated_at=now))
            self._reschedule(session, specs)

    def _reschedule(self, session: Session, specs: Sequence[CredentialSpec]) -> None:
        """The next rotation follows the config's rotate_every, counted from the key's creation or the last
        rotation: a shorter (or longer) rotate_every moves credentials that were already scheduled."""
        by_name = {spec.name: spec for spec in specs}
        connection = session.connection()
        rows = connection.execute(select(CredentialRow.name, CredentialRow.key_created_at,
                                         CredentialRow.last_rotated_at, CredentialRow.next_due_at)
                                  .where(CredentialRow.configured.is_(True))).all()
        for row in rows:
            spec = by_name.get(row.name)
            if spec is None:
                continue
            due = next_rotation_due(row.key_created_at, row.last_rotated_at, spec.policy)
            if due is not None and due != row.next_due_at:
                connection.execute(update(CredentialRow).where(CredentialRow.name == row.name)
                                   .values(next_due_at=due))

    def _sync_targets(self, session: Session, spec: CredentialSpec) -> None:
        connection = session.connection()
        wanted = [target.target_id for target in spec.targets]
        stale = _table(TargetRow).delete().where(TargetRow.credential == spec.name)
        if wanted:
            stale = stale.where(TargetRow.target_id.not_in(wanted))
        connection.execute(stale)
        for target in spec.targets:
            insert = self._insert(session, TargetRow).values(
                credential=spec.name, target_id=target.target_id, kind=target.kind.value, path=target.path,
                environment_scope=target.environment_scope, access_key_id_var=target.access_key_id_var,
                secret_access_key_var=target.secret_access_key_var, create_missing=target.create_missing,
            )
            connection.execute(insert.on_conflict_do_update(
                index_elements=["credential", "target_id"],
                set_={column: insert.excluded[column] for column in (
                    "kind", "path", "environment_scope", "access_key_id_var", "secret_access_key_var",
                    "create_missing")},
            ))

    def get_status(self, name: str) -> CredentialStatus | None:
        with self._session(f"reading credential {name}") as session:
            row = session.get(CredentialRow, name)
            return None if row is None else status_from_row(row)

    def list_statuses(self) -> list[CredentialStatus]:
        """Configured credentials, by name."""
        with self._session("listing credentials") as session:
            rows = session.scalars(
                select(CredentialRow).where(CredentialRow.configured.is_(True)).order_by(CredentialRow.name))
            return [status_from_row(row) for row in rows]

    def set_status(self, name: str, state: CredentialState, now: datetime, *,
                   current_key_id: str | None = None, key_created_at: datetime | None = None,
                   last_rotated_at: datetime | None = None, next_due_at: datetime | None = None,
                   last_error: str | None = None) -> None:
        optional = {"current_key_id": current_key_id, "key_created_at": key_created_at,
                    "last_rotated_at": last_rotated_at, "next_due_at": next_due_at}
        values: dict[str, Any] = {key: value for key, value in optional.items() if value is not None}
        values.update(state=CredentialState(state).value, last_error=last_error, updated_at=now, retry_at=None)
        if CredentialState(state) is not CredentialState.FAILED:
            values["unreachable_failures"] = 0  # only failures in a row back off
        with self._session(f"updating credential {name}", write=True) as session:
            changed = session.connection().execute(
                update(CredentialRow).where(CredentialRow.name == name).values(**values)).rowcount
        if changed == 0:
            raise StoreError(f"credential {name!r} is not in the database",
                             hint="credentials are synced from the config when a command starts; "
                                  "check the name against [[credentials]] in the config")

    # journal --------------------------------------------------------------------------------------------

    def open_journal(self, credential: str) -> Journal | None:
        with self._session(f"reading the open rotation of {credential}") as session:
            row = session.scalars(
                select(JournalRow)
                .where(JournalRow.credential == credential, JournalRow.phase.in_(UNFINISHED_PHASES))
                .order_by(JournalRow.started_at.desc()).limit(1)
            ).first()
            return None if row is None else journal_from_row(row)

    def save_journal(self, journal: Journal) -> None:
        values = journal_values(journal)
        with self._session(f"saving rotation {journal.rotation_id} of {journal.credential}", write=True) as session:
            insert = self._insert(session, JournalRow).values(**values)
            try:
                session.connection().execute(insert.on_conflict_do_update(
                    index_elements=["rotation_id"],
                    set_={column: insert.excluded[column] for column in values if column != "rotation_id"},
                ))
            except IntegrityError as exc:
                # Only the one-unfinished-rotation index can refuse an upsert keyed on rotation_id.
                raise StoreError(
                    f"credential {journal.credential} already has an unfinished rotation; "
                    f"rotation {journal.rotation_id} cannot start beside it",
                    hint="another process may be rotating it: run `rotator status`, and let that rotation "
                         "finish (or be superseded) first") from exc

    def journals(self, credential: str) -> list[Journal]:
        with self._session(f"reading rotations of {credential}") as session:
            rows = session.scalars(select(JournalRow).where(JournalRow.credential == credential)
                                   .order_by(JournalRow.started_at, JournalRow.rotation_id))
            return [journal_from_row(row) for row in rows]

    def journals_with_key(self, key_id: str) -> list[Journal]:
        with self._session(f"reading rotations of key {key_id}") as session:
            rows = session.scalars(
                select(JournalRow).where(or_(JournalRow.old_key_id == key_id, JournalRow.new_key_id == key_id))
                .order_by(JournalRow.started_at, JournalRow.rotation_id))
            return [journal_from_row(row) for row in rows]

    # keys and history -----------------------------------------------------------------------------------

    def remember_key(self, owner: KeyOwner, now: datetime, *, status: str,
                     created_at: datetime | None = None) -> None:
        """Upsert what is known of a key. Unknown fields (None) never erase what was known before."""
        with self._session(f"remembering key {owner.key_id}", write=True) as session:
            insert = self._insert(session, KeySeenRow).values(
                key_id=owner.key_id, credential=owner.credential, account=owner.account,
                user_name=owner.user_name, user_id=owner.user_id, status=str(status), created_at=created_at,
                first_seen_at=now, last_seen_at=now, minted_by=owner.minted_by,
            )
            seen = _table(KeySeenRow).c
            session.connection().execute(insert.on_conflict_do_update(
                index_elements=["key_id"],
                set_={
                    "account": insert.excluded.account, "user_name": insert.excluded.user_name,
                    "status": insert.excluded.status, "last_seen_at": insert.excluded.last_seen_at,
                    **{column: func.coalesce(insert.excluded[column], seen[column])
                       for column in ("credential", "user_id", "created_at", "minted_by")},
                },
            ))

    def key_owner(self, key_id: str) -> KeyOwner | None:
        """From the keys seen; failing that, from a rotation that created or replaced the key (a crash
        between CreateAccessKey and remember_key leaves the key only in the journal)."""
        with self._session(f"looking up the owner of {key_id}") as session:
            seen = session.get(KeySeenRow, key_id)
            if seen is not None:
                return KeyOwner(key_id=seen.key_id, credential=seen.credential, account=seen.account,
                                user_name=seen.user_name, user_id=seen.user_id, minted_by=seen.minted_by)
            journal = session.scalars(
                select(JournalRow).where(or_(JournalRow.old_key_id == key_id, JournalRow.new_key_id == key_id))
                .order_by(JournalRow.started_at.desc()).limit(1)).first()
            if journal is None:
                return None
            return KeyOwner(key_id=key_id, credential=journal.credential, account=journal.account,
                            user_name=journal.user_name, user_id=journal.user_id)

    def append_event(self, event: Event) -> None:
        """Events are append-only: this store has no way to change or delete one."""
        with self._session(f"recording event {event.action}", write=True) as session:
            session.add(EventRow(at=event.at, actor=event.actor, credential=event.credential, action=event.action,
                                 outcome=event.outcome, key_ids=list(event.key_ids), detail=dict(event.detail)))

    def events(self, credential: str | None = None, limit: int = 100) -> list[Event]:
        query = select(EventRow).order_by(EventRow.at.desc(), EventRow.id.desc()).limit(limit)
        if credential is not None:
            query = query.where(EventRow.credential == credential)
        with self._session("reading events") as session:
            return [Event(at=row.at, actor=row.actor, action=row.action, outcome=row.outcome,
                          credential=row.credential, key_ids=tuple(row.key_ids), detail=dict(row.detail))
                    for row in session.scalars(query)]

    # incidents ------------------------------------------------------------------------------------------

    def save_incident(self, incident: Incident) -> None:
        now = self._clock()
        values = incident_values(incident)
        with self._session(f"saving incident {incident.incident_id}", write=True) as session:
            insert = self._insert(session, IncidentRow).values(**values, created_at=now, updated_at=now)
            session.connection().execute(insert.on_conflict_do_update(
                index_elements=["incident_id"],
                set_={column: insert.excluded[column]
                      for column in (*values, "updated_at") if column != "incident_id"},
            ))

    def incidents_for_key(self, key_id: str) -> list[Incident]:
        with self._session(f"reading incidents of {key_id}") as session:
            rows = session.scalars(select(IncidentRow).where(IncidentRow.key_id == key_id)
                                   .order_by(IncidentRow.t0, IncidentRow.incident_id))
            return [incident_from_row(row) for row in rows]

    def incident(self, incident_id: str) -> Incident | None:
        with self._session(f"reading incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            return None if row is None else incident_from_row(row)

    def open_incidents(self) -> list[Incident]:
        with self._session("reading open incidents") as session:
            rows = session.scalars(select(IncidentRow).where(IncidentRow.closed_at.is_(None))
                                   .order_by(IncidentRow.t0, IncidentRow.incident_id))
            return [incident_from_row(row) for row in rows]

    def list_incidents(self, limit: int = 1000) -> list[Incident]:
        with self._session("listing incidents") as session:
            # Open ones first (closed_at IS NULL sorts as false), so a limit never hides an open incident.
            rows = session.scalars(select(IncidentRow)
                                   .order_by(IncidentRow.closed_at.is_not(None), IncidentRow.t0.desc(),
                                             IncidentRow.incident_id)
                                   .limit(limit))
            return [incident_from_row(row) for row in rows]

    # notifications kept while Slack did not answer ------------------------------------------------------

    def queue_notification(self, message: QueuedNotification) -> None:
        with self._session(f"keeping a notification to {message.channel}", write=True) as session:
            session.add(OutboxRow(queued_at=message.queued_at, channel=message.channel, title=message.title,
                                  lines=list(message.lines), severity=message.severity, thread=message.thread,
                                  attempts=message.attempts, last_error=message.last_error))

    def queued_notifications(self, limit: int = 100) -> list[QueuedNotification]:
        with self._session("reading kept notifications") as session:
            rows = session.scalars(select(OutboxRow).order_by(OutboxRow.queued_at, OutboxRow.id).limit(limit))
            return [QueuedNotification(row.channel, row.title, tuple(row.lines), row.severity, row.queued_at,
                                       row.thread, row.attempts, row.last_error, row.id) for row in rows]

    def queued_count(self) -> int:
        with self._session("counting kept notifications") as session:
            return int(session.scalar(select(func.count()).select_from(OutboxRow)) or 0)

    def notification_delivered(self, message_id: int) -> None:
        with self._session(f"removing delivered notification {message_id}", write=True) as session:
            session.connection().execute(_table(OutboxRow).delete().where(OutboxRow.id == message_id))

    def notification_failed(self, message_id: int, error: str) -> None:
        with self._session(f"updating kept notification {message_id}", write=True) as session:
            session.connection().execute(update(OutboxRow).where(OutboxRow.id == message_id)
                                         .values(attempts=OutboxRow.attempts + 1, last_error=error))

    # leases ---------------------------------------------------------------------------------------------

    def try_acquire_lease(self, name: str, holder: str, ttl: timedelta) -> int | None:
        """Take the lease when it is free, expired or already ours, in one atomic statement; its fencing token.

        INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING: the row's lock (PostgreSQL) or the database
        write lock (SQLite) makes the check and the takeover one step, and a missing row is created by the
        same statement, so two contenders can never both win. Expiry is judged by the database's clock in
        that statement. ``token`` grows with every new tenure (a different holder, or ours after it
        expired); re-taking a live lease of ours keeps it.
        """
        lease = _table(LeaseRow).c
        now = self._db_now()
        with self._session(f"acquiring lease {name}", write=True) as session:
            insert = self._insert(session, LeaseRow).values(
                name=name, holder=holder, acquired_at=now, expires_at=self._db_in(ttl), token=1)
            still_ours = and_(lease.holder == holder, lease.expires_at >= now)
            token = session.connection().execute(insert.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "holder": insert.excluded.holder,
                    "expires_at": insert.excluded.expires_at,
                    "acquired_at": case((still_ours, lease.acquired_at), else_=insert.excluded.acquired_at),
                    "token": case((still_ours, lease.token), else_=lease.token + 1),
                },
                where=or_(lease.holder.is_(None), lease.holder == holder, lease.expires_at < now),
            ).returning(lease.token)).scalar()
        return None if token is None else int(token)

    def renew_lease(self, fence: LeaseFence) -> bool:
        """Extend our tenure; False when it is not current any more (expired, taken over, preempted)."""
        with self._session(f"renewing lease {fence.name}", write=True) as session:
            return self._extend(session, fence)

    def lease_is_current(self, fence: LeaseFence) -> bool:
        with self._session(f"checking lease {fence.name}") as session:
            current = session.connection().execute(
                select(LeaseRow.token)
                .where(LeaseRow.name == fence.name, LeaseRow.holder == fence.holder, LeaseRow.token == fence.token,
                       LeaseRow.expires_at >= self._db_now())).first()
        return current is not None

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if it is ours; the row stays so the fencing token keeps counting."""
        with self._session(f"releasing lease {name}", write=True) as session:
            session.connection().execute(
                update(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder).values(holder=None))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """(holder, expires_at) of a lease not released; the caller compares expires_at with its now."""
        with self._session(f"reading lease {name}") as session:
            row = session.get(LeaseRow, name)
            return None if row is None or row.holder is None else (row.holder, row.expires_at)

    def lease_token(self, name: str) -> int | None:
        """The fencing token of the current tenure, None for a lease never taken."""
        with self._session(f"reading lease {name}") as session:
            row = session.get(LeaseRow, name)
            return None if row is None else row.token

    def expire_lease(self, name: str) -> None:
        """End the current tenure now, whoever holds it: an incident takes precedence over a rotation.
        The holder's next renew fails; anyone (the incident) may take the lease."""
        with self._session(f"expiring lease {name}", write=True) as session:
            session.connection().execute(update(LeaseRow).where(LeaseRow.name == name).values(expires_at=_LONG_AGO))
