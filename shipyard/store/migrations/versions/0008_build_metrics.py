"""Builds keep what their cgroups measured (CPU and memory samples) for GET …/build-metrics.

Revision ID: 0008_build_metrics
Revises: 0007_base_images
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_build_metrics"
down_revision = "0007_base_images"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("metrics")
