"""Builds whose image garbage collection removed say so (``image_collected_at``).

Revision ID: 0011_gc
Revises: 0009_dockerfile_contents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_gc"
down_revision = "0009_dockerfile_contents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("image_collected_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("image_collected_at")
