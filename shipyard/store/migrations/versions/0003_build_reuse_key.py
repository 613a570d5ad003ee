"""Builds remember what shaped their image, so an identical rebuild can reuse it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("reuse_key", sa.String(length=64), nullable=True))
    op.create_index("ix_builds_reuse", "builds", ["workload_id", "sha", "reuse_key"])


def downgrade() -> None:
    op.drop_index("ix_builds_reuse", table_name="builds")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("reuse_key")
