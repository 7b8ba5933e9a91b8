"""Initial schema: credentials, targets, keys seen, rotation journal, events, incidents, leases.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Migrations must run on SQLite (batch mode) and PostgreSQL alike, and never import rotator's models:
a migration is a snapshot of the schema at one point in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The phases of a rotation in flight, as of this revision: at most one such row per credential.
_UNFINISHED = sa.text("phase IN ('intent', 'created', 'verified', 'published', 'retired')")


def _at(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "credentials",
        _text("name", 200),
        _text("iam_user", 128),
        _text("account", 200),
        sa.Column("owners", sa.JSON(), nullable=False),
        sa.Column("configured", sa.Boolean(), nullable=False),
        _text("state", 32),
        _text("current_key_id", 128, nullable=True),
        _at("key_created_at", nullable=True),
        _at("last_rotated_at", nullable=True),
        _at("next_due_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_credentials"),
    )
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("credential", 200),
        _text("target_id", 1000),
        _text("kind", 32),
        _text("path", 500, nullable=True),
        _text("environment_scope", 255),
        _text("access_key_id_var", 255),
        _text("secret_access_key_var", 255),
        sa.Column("create_missing", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["credential"], ["credentials.name"], name="fk_targets_credential_credentials",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        sa.UniqueConstraint("credential", "target_id", name="uq_targets_credential_target_id"),
    )
    op.create_table(
        "keys_seen",
        _text("key_id", 128),
        _text("credential", 200, nullable=True),
        _text("account", 200),
        _text("user_name", 128),
        _text("user_id", 128, nullable=True),
        _text("status", 32),
        _at("created_at", nullable=True),
        _at("first_seen_at"),
        _at("last_seen_at"),
        sa.PrimaryKeyConstraint("key_id", name="pk_keys_seen"),
    )
    op.create_index("ix_keys_seen_credential", "keys_seen", ["credential"])
    op.create_table(
        "rotation_journal",
        _text("rotation_id", 64),
        _text("credential", 200),
        _text("account", 200),
        _text("user_name", 128),
        _text("user_id", 128),
        sa.Column("prior_key_ids", sa.JSON(), nullable=False),
        _text("old_key_id", 128, nullable=True),
        _text("new_key_id", 128, nullable=True),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=True),
        _text("phase", 32),
        sa.Column("targets_done", sa.JSON(), nullable=False),
        _at("started_at"),
        _at("updated_at"),
        _at("published_at", nullable=True),
        _at("deactivated_at", nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("rotation_id", name="pk_rotation_journal"),
    )
    op.create_index("ix_rotation_journal_credential_phase", "rotation_journal", ["credential", "phase"])
    op.create_index("ix_rotation_journal_old_key_id", "rotation_journal", ["old_key_id"])
    op.create_index("ix_rotation_journal_new_key_id", "rotation_journal", ["new_key_id"])
    op.create_index("uq_rotation_journal_one_unfinished", "rotation_journal", ["credential"], unique=True,
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _at("at"),
        _text("actor", 200),
        _text("credential", 200, nullable=True),
        _text("action", 64),
        _text("outcome", 64),
        sa.Column("key_ids", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_credential_at", "events", ["credential", "at"])
    op.create_table(
        "incidents",
        _text("incident_id", 64),
        _text("key_id", 128),
        _text("account", 200, nullable=True),
        _text("user_name", 128, nullable=True),
        _text("credential", 200, nullable=True),
        _text("actor", 200),
        sa.Column("reason", sa.Text(), nullable=False),
        _at("t0"),
        sa.Column("steps", sa.JSON(), nullable=False),
        _text("status", 32),
        sa.Column("report_markdown", sa.Text(), nullable=True),
        sa.Column("report_json", sa.Text(), nullable=True),
        _text("slack_thread", 200, nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("incident_id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_key_id", "incidents", ["key_id"])
    op.create_table(
        "leases",
        _text("name", 200),
        _text("holder", 200, nullable=True),
        _at("acquired_at"),
        _at("expires_at"),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes with it, on both backends.
    for table in ("leases", "incidents", "events", "rotation_journal", "keys_seen", "targets", "credentials"):
        op.drop_table(table)
