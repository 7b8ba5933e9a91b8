"""Rotation journal: when a hold began, and the old key's LastUsedDate seen at that hold.

A rotation held because the old key was still used after publish resumes once that LastUsedDate has
stood still for a whole grace period; both values must survive a restart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rotation_journal") as batch:
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("old_last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rotation_journal") as batch:
        batch.drop_column("old_last_used_at")
        batch.drop_column("held_at")
