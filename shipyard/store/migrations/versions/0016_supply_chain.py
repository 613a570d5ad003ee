"""Uploaded build contexts (``POST /v1/projects/{p}/uploads``), the upload a build was
started from, and the digests of the SBOM and provenance attached to a build's image.

Revision ID: 0016_supply_chain
Revises: 0015_workers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_supply_chain"
down_revision = "0015_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(64),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("build_id", sa.String(64), nullable=True, unique=True),
    )
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("upload_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sbom_digest", sa.String(128), nullable=True))
        batch.add_column(sa.Column("provenance_digest", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("provenance_digest")
        batch.drop_column("sbom_digest")
        batch.drop_column("upload_id")
    op.drop_table("uploads")
