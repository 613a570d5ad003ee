"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 11:41:18.346405
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "workloads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("vcs_url", sa.Text(), nullable=True),
        sa.Column("vcs_type", sa.String(length=32), nullable=True),
        sa.Column("vcs_branch", sa.String(length=255), nullable=True),
        sa.Column("dockerfile_path", sa.String(length=1024), nullable=False),
        sa.Column("docker_work_dir", sa.String(length=1024), nullable=False),
        sa.Column("use_cache", sa.Boolean(), nullable=False),
        sa.Column("path_ignore_rules", sa.JSON(), nullable=False),
        sa.Column("is_allow_list", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("build_arguments_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "entity", "slug"),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workload_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("concluded", sa.Boolean(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=True),
        sa.Column("requested_sha", sa.String(length=64), nullable=True),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("pull_request_id", sa.BigInteger(), nullable=True),
        sa.Column("bundle_url", sa.Text(), nullable=True),
        sa.Column("dockerfile_path", sa.String(length=1024), nullable=True),
        sa.Column("docker_work_dir", sa.String(length=1024), nullable=True),
        sa.Column("docker_target", sa.String(length=255), nullable=True),
        sa.Column("overrides_enc", sa.LargeBinary(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("registry_uri", sa.Text(), nullable=True),
        sa.Column("image_digest", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("concluded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("abort_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["workload_id"], ["workloads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workload_id", "idempotency_key"),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index("ix_builds_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_builds_workload_created", ["workload_id", "created_at"], unique=False
        )

    op.create_table(
        "build_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("build_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("build_logs", schema=None) as batch_op:
        batch_op.create_index("ix_build_logs_build_seq", ["build_id", "seq"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("build_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_build_logs_build_seq")

    op.drop_table("build_logs")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index("ix_builds_workload_created")
        batch_op.drop_index("ix_builds_status")

    op.drop_table("builds")
    op.drop_table("workloads")
    op.drop_table("projects")
    op.drop_table("api_tokens")
