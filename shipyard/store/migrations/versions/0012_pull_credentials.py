"""Projects keep sealed registry credentials for pulling private base images.

Revision ID: 0012_pull_credentials
Revises: 0011_gc
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_pull_credentials"
down_revision = "0011_gc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("registry_pull_credentials_enc", sa.LargeBinary(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("registry_pull_credentials_enc")
