"""The database schema (SQLAlchemy 2 typed declarative models, portable between SQLite and PostgreSQL),
and how its rows map to the domain's frozen dataclasses.

Alembic migrations (top-level ``migrations/``) must produce exactly this schema; the migration tests
compare them. Change a model only together with a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rotator.domain import CredentialState, CredentialStatus, Incident, Journal, Phase

# Explicit constraint names keep SQLite batch migrations and PostgreSQL in step with the models.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Phases of a rotation still in flight. The partial unique index below lets at most one exist per credential.
UNFINISHED_PHASES = tuple(phase.value for phase in Phase if not phase.finished)

NAME = 200  # credential, account, actor and lease names
KEY_ID = 128  # AWS allows access key ids up to 128 characters
IAM_NAME = 128  # IAM user names and user ids
SHORT = 32  # enum-like values: state, phase, status, kind


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the offset (timestamptz); SQLite keeps none, so values are stored as naive UTC and
    given UTC back on the way out. Naive input is refused: it would be read back as UTC, which is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text; one fixed offset-free format keeps `<` and ORDER BY correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class CredentialRow(Base):
    """A configured (or formerly configured) credential and its rotation status."""

    __tablename__ = "credentials"

    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    iam_user: Mapped[str] = mapped_column(String(IAM_NAME))
    account: Mapped[str] = mapped_column(String(NAME))
    owners: Mapped[list[str]]
    configured: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(SHORT))
    current_key_id: Mapped[str | None] = mapped_column(String(KEY_ID))
    key_created_at: Mapped[datetime | None]
    last_rotated_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
    # A failure because AWS, GitLab or Slack could not be reached: tried again at retry_at, later each time.
    retry_at: Mapped[datetime | None]
    unreachable_failures: Mapped[int] = mapped_column(Integer, server_default="0")


class TargetRow(Base):
    """One GitLab place holding a credential's key pair; synced from config."""

    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("credential", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credential: Mapped[str] = mapped_column(String(NAME), ForeignKey("credentials.name", ondelete="CASCADE"))
    target_id: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(SHORT))
    path: Mapped[str | None] = mapped_column(String(500))
    environment_scope: Mapped[str] = mapped_column(String(255))
    access_key_id_var: Mapped[str] = mapped_column(String(255))
    secret_access_key_var: Mapped[str] = mapped_column(String(255))
    create_missing: Mapped[bool] = mapped_column(Boolean)


class KeySeenRow(Base):
    """Every access key id rotator has seen, and whose it is: lets `revoke` name the owner offline."""

    __tablename__ = "keys_seen"

    key_id: Mapped[str] = mapped_column(String(KEY_ID), primary_key=True)
    credential: Mapped[str | None] = mapped_column(String(NAME), index=True)
    account: Mapped[str] = mapped_column(String(NAME))
    user_name: Mapped[str] = mapped_column(String(IAM_NAME))
    user_id: Mapped[str | None] = mapped_column(String(IAM_NAME))
    status: Mapped[str] = mapped_column(String(SHORT))
    created_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    minted_by: Mapped[str | None] = mapped_column(String(KEY_ID))  # a session key: the access key that minted it


class JournalRow(Base):
    """The write-ahead log of one rotation. ``sealed_secret`` is the only column that may hold a secret,
    and only sealed (envelope-encrypted); it is wiped once every target has the new pair."""

    __tablename__ = "rotation_journal"
    __table_args__ = (
        Index("ix_rotation_journal_credential_phase", "credential", "phase"),
        Index("ix_rotation_journal_old_key_id", "old_key_id"),
        Index("ix_rotation_journal_new_key_id", "new_key_id"),
        # Two rotations in flight for one credential could exceed the two-key limit: the database refuses it.
        Index(
            "uq_rotation_journal_one_unfinished",
            "credential",
            unique=True,
            sqlite_where=column("phase").in_(UNFINISHED_PHASES),
            postgresql_where=column("phase").in_(UNFINISHED_PHASES),
        ),
    )

    rotation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential: Mapped[str] = mapped_column(String(NAME))
    account: Mapped[str] = mapped_column(String(NAME))
    user_name: Mapped[str] = mapped_column(String(IAM_NAME))
    user_id: Mapped[str] = mapped_column(String(IAM_NAME))
    prior_key_ids: Mapped[list[str]]
    old_key_id: Mapped[str | None] = mapped_column(String(KEY_ID))
    new_key_id: Mapped[str | None] = mapped_column(String(KEY_ID))
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    phase: Mapped[str] = mapped_column(String(SHORT))
    targets_done: Mapped[list[str]]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    deactivated_at: Mapped[datetime | None]
    hold_reason: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[datetime | None]
    old_last_used_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    broken_targets: Mapped[list[str]] = mapped_column(server_default=text("'[]'"))


class EventRow(Base):
    """Append-only history of outside actions and decisions. Never carries a secret."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_credential_at", "credential", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(NAME))
    credential: Mapped[str | None] = mapped_column(String(NAME))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(64))
    key_ids: Mapped[list[str]]
    detail: Mapped[dict[str, Any]]


class IncidentRow(Base):
    """One run of the compromised-key playbook."""

    __tablename__ = "incidents"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(KEY_ID), index=True)
    account: Mapped[str | None] = mapped_column(String(NAME))
    user_name: Mapped[str | None] = mapped_column(String(IAM_NAME))
    credential: Mapped[str | None] = mapped_column(String(NAME))
    actor: Mapped[str] = mapped_column(String(NAME))
    reason: Mapped[str] = mapped_column(Text)
    t0: Mapped[datetime]
    steps: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(SHORT))
    report_markdown: Mapped[str | None] = mapped_column(Text)
    report_json: Mapped[str | None] = mapped_column(Text)
    slack_thread: Mapped[str | None] = mapped_column(String(NAME))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The follow-up after CloudTrail's delivery delay: open until closed_at; re-audited at follow_up_at.
    account_id: Mapped[str | None] = mapped_column(String(SHORT))
    role_name: Mapped[str | None] = mapped_column(String(IAM_NAME))
    contained_at: Mapped[datetime | None]
    follow_up_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    covered_until: Mapped[datetime | None]
    slack_channel: Mapped[str | None] = mapped_column(String(NAME))
    sessions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # per principal: its session deny


class ExposureRow(Base):
    """One exposure report rotator handled: a key named by an AWS Health event, or a user AWS quarantined."""

    __tablename__ = "exposure_reports"

    signal_id: Mapped[str] = mapped_column(String(2000), primary_key=True)  # event ARNs run to 1600 characters
    source: Mapped[str] = mapped_column(String(SHORT))
    actor: Mapped[str] = mapped_column(String(NAME))
    account: Mapped[str | None] = mapped_column(String(NAME))
    user_name: Mapped[str | None] = mapped_column(String(IAM_NAME))
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID), index=True)
    action: Mapped[str] = mapped_column(String(SHORT))
    outcome: Mapped[str] = mapped_column(String(SHORT))
    detail: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[str | None] = mapped_column(String(64))
    quarantine: Mapped[str | None] = mapped_column(String(SHORT))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class OutboxRow(Base):
    """A Slack message that Slack did not answer for, kept until a sender delivers it (oldest first).
    Holds what the message said, as every Slack message does: key ids and facts, never a secret."""

    __tablename__ = "notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queued_at: Mapped[datetime] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(NAME))
    title: Mapped[str] = mapped_column(Text)
    lines: Mapped[list[str]]
    severity: Mapped[str] = mapped_column(String(SHORT))
    thread: Mapped[str | None] = mapped_column(String(NAME))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class LeaseRow(Base):
    """A named lease with a fencing token: ``token`` grows by one every time a new tenure begins."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(NAME))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    token: Mapped[int] = mapped_column(Integer)


metadata = Base.metadata


# --- rows <-> domain ---------------------------------------------------------------------------------------


def status_from_row(row: CredentialRow) -> CredentialStatus:
    return CredentialStatus(
        name=row.name, state=CredentialState(row.state), current_key_id=row.current_key_id,
        key_created_at=row.key_created_at, last_rotated_at=row.last_rotated_at, next_due_at=row.next_due_at,
        last_error=row.last_error, updated_at=row.updated_at, retry_at=row.retry_at,
    )


def journal_values(journal: Journal) -> dict[str, Any]:
    return {
        "rotation_id": journal.rotation_id, "credential": journal.credential, "account": journal.account,
        "user_name": journal.user_name, "user_id": journal.user_id, "prior_key_ids": list(journal.prior_key_ids),
        "old_key_id": journal.old_key_id, "new_key_id": journal.new_key_id, "sealed_secret": journal.sealed_secret,
        "phase": Phase(journal.phase).value, "targets_done": sorted(journal.targets_done),
        "started_at": journal.started_at, "updated_at": journal.updated_at, "published_at": journal.published_at,
        "deactivated_at": journal.deactivated_at, "hold_reason": journal.hold_reason, "error": journal.error,
        "held_at": journal.held_at, "old_last_used_at": journal.old_last_used_at,
        "broken_targets": sorted(journal.broken_targets),
    }


def journal_from_row(row: JournalRow) -> Journal:
    return Journal(
        rotation_id=row.rotation_id, credential=row.credential, account=row.account, user_name=row.user_name,
        user_id=row.user_id, prior_key_ids=tuple(row.prior_key_ids), old_key_id=row.old_key_id,
        phase=Phase(row.phase), started_at=row.started_at, updated_at=row.updated_at, new_key_id=row.new_key_id,
        sealed_secret=row.sealed_secret, targets_done=frozenset(row.targets_done), published_at=row.published_at,
        deactivated_at=row.deactivated_at, hold_reason=row.hold_reason, error=row.error,
        held_at=row.held_at, old_last_used_at=row.old_last_used_at,
        broken_targets=frozenset(row.broken_targets or ()),
    )


def incident_values(incident: Incident) -> dict[str, Any]:
    return {
        "incident_id": incident.incident_id, "key_id": incident.key_id, "account": incident.account,
        "user_name": incident.user_name, "credential": incident.credential, "actor": incident.actor,
        "reason": incident.reason, "t0": incident.t0, "steps": dict(incident.steps), "status": incident.status,
        "report_markdown": incident.report_markdown, "report_json": incident.report_json,
        "slack_thread": incident.slack_thread, "account_id": incident.account_id, "role_name": incident.role_name,
        "contained_at": incident.contained_at, "follow_up_at": incident.follow_up_at,
        "closed_at": incident.closed_at, "covered_until": incident.covered_until,
        "slack_channel": incident.slack_channel, "sessions": [dict(item) for item in incident.sessions],
    }


def incident_from_row(row: IncidentRow) -> Incident:
    return Incident(
        incident_id=row.incident_id, key_id=row.key_id, account=row.account, user_name=row.user_name,
        actor=row.actor, reason=row.reason, t0=row.t0, steps=dict(row.steps), status=row.status,
        credential=row.credential, report_markdown=row.report_markdown, report_json=row.report_json,
        slack_thread=row.slack_thread, account_id=row.account_id, role_name=row.role_name,
        contained_at=row.contained_at, follow_up_at=row.follow_up_at, closed_at=row.closed_at,
        covered_until=row.covered_until, slack_channel=row.slack_channel, sessions=tuple(row.sessions or ()),
    )
