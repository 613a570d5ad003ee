"""Inbound webhook secrets and delivery records, outbound notification endpoints and their
deliveries, and what triggered each build.

Revision ID: 0013_webhooks
Revises: 0012_pull_credentials
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_webhooks"
down_revision = "0012_pull_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_webhooks",
        sa.Column(
            "project_id",
            sa.String(64),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.String(64),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(255), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=True),
        sa.Column("repository", sa.Text(), nullable=True),
        sa.Column("ref", sa.String(1024), nullable=True),
        sa.Column("before", sa.String(64), nullable=True),
        sa.Column("after", sa.String(64), nullable=True),
        sa.Column("pull_request_id", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("diff_basis", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.UniqueConstraint("project_id", "provider", "delivery_id"),
    )
    op.create_index(
        "ix_webhook_deliveries_project_received",
        "webhook_deliveries",
        ["project_id", "received_at"],
    )
    op.create_table(
        "notification_endpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.String(64),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("on_start", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id",
            sa.Integer(),
            sa.ForeignKey("notification_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "build_id",
            sa.String(64),
            sa.ForeignKey("builds.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.UniqueConstraint("endpoint_id", "build_id", "event"),
    )
    op.create_index(
        "ix_notification_deliveries_due", "notification_deliveries", ["state", "next_at"]
    )
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("trigger", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("trigger")
    op.drop_index("ix_notification_deliveries_due", "notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_endpoints")
    op.drop_index("ix_webhook_deliveries_project_received", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("project_webhooks")
