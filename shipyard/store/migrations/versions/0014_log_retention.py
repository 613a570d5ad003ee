"""Log retention (issue 11, item 9): when a build's log was removed (``logs_expired_at``)
and how large it was (``log_bytes``, measured once the build concluded: the total size
retention keeps under its cap is a sum over builds, not a scan of every line).

Revision ID: 0014_log_retention
Revises: 0013_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_log_retention"
down_revision = "0013_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("logs_expired_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("log_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("log_bytes")
        batch.drop_column("logs_expired_at")
