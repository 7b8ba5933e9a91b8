"""Rotation journal: the targets left holding half a pair (the new secret, the old key id).

Such a target is "broken": AWS rejects its pair until rotator (retrying every [service] retry_broken_after)
or a human completes it. ``status`` and ``/metrics`` (rotator_targets_broken) read this list.
Existing rows get an empty list.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rotation_journal") as batch:
        batch.add_column(sa.Column("broken_targets", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("rotation_journal") as batch:
        batch.drop_column("broken_targets")
