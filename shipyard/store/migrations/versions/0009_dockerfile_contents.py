"""Builds keep their inline Dockerfile (``overrides.docker.dockerfileContents``).

Revision ID: 0009_dockerfile_contents
Revises: 0008_build_metrics
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_dockerfile_contents"
down_revision = "0008_build_metrics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("dockerfile_contents", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("dockerfile_contents")
