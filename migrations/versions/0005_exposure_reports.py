"""Exposure reports: the AWS Health events and AWS quarantine policies the service acted on.

Lets a report delivered twice (SQS and AWS Health deliver at least once) or a key reported twice be handled
once, and remembers which quarantined users an incident already explains.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exposure_reports",
        sa.Column("signal_id", sa.String(2000), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("account", sa.String(200), nullable=True),
        sa.Column("user_name", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(128), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("quarantine", sa.String(32), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", name="pk_exposure_reports"),
    )
    op.create_index("ix_exposure_reports_key_id", "exposure_reports", ["key_id"])
    op.create_index("ix_exposure_reports_last_seen_at", "exposure_reports", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_exposure_reports_last_seen_at", table_name="exposure_reports")
    op.drop_index("ix_exposure_reports_key_id", table_name="exposure_reports")
    op.drop_table("exposure_reports")
