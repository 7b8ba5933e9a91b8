"""Incidents: the follow-up after CloudTrail's delivery delay, and the sessions cut per principal.

An incident stays open (closed_at NULL) until an audit has covered T0 plus the delivery delay; the service
re-audits it at follow_up_at. ``sessions`` holds one entry per principal (user or role) whose sessions were,
or could not be, cut. Incidents recorded before this revision were never followed up this way: they are
closed as of their last update, so no service starts re-auditing old incidents after the upgrade.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("account_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("role_name", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("contained_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("follow_up_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("covered_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("slack_channel", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("sessions", sa.JSON(), nullable=True))
        batch.create_index("ix_incidents_closed_at", ["closed_at"])
    op.execute(sa.text("UPDATE incidents SET closed_at = updated_at WHERE closed_at IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_closed_at")
        for column in ("sessions", "slack_channel", "covered_until", "closed_at", "follow_up_at", "contained_at",
                       "role_name", "account_id"):
            batch.drop_column(column)
