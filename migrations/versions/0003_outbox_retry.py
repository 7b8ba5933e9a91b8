"""Notifications kept until Slack answers, and the retry time of a credential whose party was unreachable.

- ``notification_outbox``: a Slack message that could not be delivered because Slack did not answer, kept
  (oldest first) until a sender posts it; it holds what the message said, never a secret.
- ``credentials.retry_at`` / ``credentials.unreachable_failures``: a credential that failed because AWS,
  GitLab or Slack could not be reached is tried again at ``retry_at``, backing off with each failure in a row.
- ``keys_seen.minted_by``: for a session key an audit found minted by a user's access key, that key, so
  `revoke --key ASIA…` can name what to contain upstream.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("unreachable_failures", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("keys_seen") as batch:
        batch.add_column(sa.Column("minted_by", sa.String(length=128), nullable=True))
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("thread", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notification_outbox"),
    )
    op.create_index("ix_notification_outbox_queued_at", "notification_outbox", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_outbox_queued_at", table_name="notification_outbox")
    op.drop_table("notification_outbox")
    with op.batch_alter_table("keys_seen") as batch:
        batch.drop_column("minted_by")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("unreachable_failures")
        batch.drop_column("retry_at")
