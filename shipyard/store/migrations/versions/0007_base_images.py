"""Builds remember the base images they were built FROM (reference -> digest or image id), so
an identical rebuild is reused only while those are unchanged.

Revision ID: 0007_base_images
Revises: 0005_secret_files
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_base_images"
down_revision = "0005_secret_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("base_images", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("base_images")
