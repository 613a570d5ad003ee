"""Build workers (scale-out, issue 12): identity and last heartbeat of each worker process.

Revision ID: 0015_workers
Revises: 0014_log_retention
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_workers"
down_revision = "0014_log_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("workers")
