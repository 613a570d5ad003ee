"""Tables. The build row is the only truth about a build (DESIGN.md, "Running builds")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Registry host → username/password for pulling private base images, AES-GCM sealed
    # (shipyard/builds/pull_credentials.py); never echoed.
    registry_pull_credentials_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class Workload(Base):
    """A service (combined or build) or a job: anything Shipyard builds images for."""

    __tablename__ = "workloads"
    __table_args__ = (UniqueConstraint("project_id", "entity", "slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(16))  # "service" | "job"
    slug: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # combined | build | manual | cron
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    vcs_url: Mapped[str | None] = mapped_column(Text)  # without credentials
    # ``user:token`` of an http(s) projectUrl, AES-GCM encrypted (builds.repo_url).
    vcs_credentials_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    vcs_type: Mapped[str | None] = mapped_column(String(32))
    vcs_branch: Mapped[str | None] = mapped_column(String(255))
    dockerfile_path: Mapped[str] = mapped_column(String(1024), default="/Dockerfile")
    docker_work_dir: Mapped[str] = mapped_column(String(1024), default="/")
    use_cache: Mapped[bool] = mapped_column(Boolean, default=True)
    path_ignore_rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_allow_list: Mapped[bool] = mapped_column(Boolean, default=False)
    # The request body minus secrets: fields about running the workload are kept, not acted on.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    build_arguments_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Set only by migration 0005: create-time buildFiles / dockerSecretMounts moved out of
    # ``spec``, waiting for the app to seal them at start (shipyard.builds.reseal).
    pending_secrets: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Build(Base):
    __tablename__ = "builds"
    __table_args__ = (
        Index("ix_builds_workload_created", "workload_id", "created_at"),
        Index("ix_builds_status", "status"),
        UniqueConstraint("workload_id", "idempotency_key"),
        Index("ix_builds_reuse", "workload_id", "sha", "reuse_key"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    concluded: Mapped[bool] = mapped_column(Boolean, default=False)
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str | None] = mapped_column(Text)

    source_kind: Mapped[str] = mapped_column(String(16))  # git | bundle
    sha: Mapped[str | None] = mapped_column(String(64))
    requested_sha: Mapped[str | None] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(String(255))
    pull_request_id: Mapped[int | None] = mapped_column(BigInteger)
    bundle_url: Mapped[str | None] = mapped_column(Text)  # redacted (builds.bundle_url)
    # The real bundleUrl (credentials, presigned query), AES-GCM encrypted, bound to the build.
    bundle_url_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    dockerfile_path: Mapped[str | None] = mapped_column(String(1024))
    docker_work_dir: Mapped[str | None] = mapped_column(String(1024))
    docker_target: Mapped[str | None] = mapped_column(String(255))
    # overrides.docker.dockerfileContents (an inline Dockerfile; not secret).
    dockerfile_contents: Mapped[str | None] = mapped_column(Text)
    # buildArguments, buildFiles and dockerSecretMounts of this build, AES-GCM encrypted.
    overrides_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # HMAC (SecretBox.fingerprint) of the canonical request body: a reused Idempotency-Key with
    # another body is refused.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    registry_uri: Mapped[str | None] = mapped_column(Text)
    # Keyed digest of everything besides the commit that shapes the image (settings, args,
    # files, secrets): a later build of the same sha and key can reuse this image.
    reuse_key: Mapped[str | None] = mapped_column(String(64))
    image_digest: Mapped[str | None] = mapped_column(String(128))
    # What each FROM resolved to (reference -> manifest digest or image id): reuse needs
    # them unchanged. None for builds from before it was recorded (never reused).
    base_images: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # {"cpu": [[iso ts, vCPU], …], "memory": [[iso ts, MB], …]} sampled from the build's cgroups.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When garbage collection removed the image (registry.uri stays: the record of what the
    # build produced; the API says the image is gone). None = the image is there.
    image_collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What started the build: {"type": "webhook", "deliveryId", "provider", "event"}; None
    # = the API (shown as {"type": "api"}).
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Log retention (shipyard/gc/log_retention.py): when the build's log lines were removed,
    # and the size of its log (characters + newlines), measured once after it concluded.
    logs_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    log_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The uploaded context a build was started from (``uploads``; source_kind "upload").
    upload_id: Mapped[str | None] = mapped_column(String(64))
    # Manifest digests of the SBOM and provenance artifacts attached to the image.
    sbom_digest: Mapped[str | None] = mapped_column(String(128))
    provenance_digest: Mapped[str | None] = mapped_column(String(128))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    concluded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Claim-and-fence bookkeeping (DESIGN.md rules 2 and 3).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class Upload(Base):
    """A build context uploaded as a tar (``shipyard build PATH``): kept on disk only until
    the one build started from it concludes (``shipyard.uploads``)."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))  # sha256 of the archive as received
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set in the transaction that starts the build: an upload builds once.
    build_id: Mapped[str | None] = mapped_column(String(64), unique=True)


class BuildLogLine(Base):
    __tablename__ = "build_logs"
    __table_args__ = (Index("ix_build_logs_build_seq", "build_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    line: Mapped[str] = mapped_column(Text)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    project_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- Webhooks, deliveries and outbound notifications (issue 13; shipyard/webhooks) ---


class ProjectWebhook(Base):
    """A project's inbound webhook secret (AES-GCM sealed; shown once, when made)."""

    __tablename__ = "project_webhooks"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One accepted delivery and, per candidate service or job, what it did and why."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("project_id", "provider", "delivery_id"),
        Index("ix_webhook_deliveries_project_received", "project_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[str | None] = mapped_column(String(1024))
    before: Mapped[str | None] = mapped_column(String(64))
    after: Mapped[str | None] = mapped_column(String(64))
    pull_request_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # "processing" | "done" | "ignored"; ``note`` says why a whole delivery was ignored.
    state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    diff_basis: Mapped[str | None] = mapped_column(Text)
    # [{"entity", "id", "outcome": "started"|"skipped", "buildId"?, "reason"?}]
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class NotificationEndpoint(Base):
    """An outbound webhook of a project: told when its builds conclude (and start)."""

    __tablename__ = "notification_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    on_start: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NotificationDelivery(Base):
    """One notification (endpoint, build, event) and its delivery attempts."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "build_id", "event"),
        Index("ix_notification_deliveries_due", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("notification_endpoints.id", ondelete="CASCADE")
    )
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))  # build.started | build.concluded
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # [{"at", "status"?, "error"?, "durationMs"}], oldest first.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class Worker(Base):
    """A build worker process (``shipyard worker``; docs/workers.md): its identity and the
    last time it proved it was alive. Builds name their worker in ``Build.worker_id``."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    concurrency: Mapped[int] = mapped_column(Integer)
    # Builds it runs now (as of its last heartbeat).
    running: Mapped[int] = mapped_column(Integer, default=0)
