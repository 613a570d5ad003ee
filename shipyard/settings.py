"""Configuration, built once at start and passed down (never read from globals)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Bind addresses of the embedded registry that include 127.0.0.1: image names, Shipyard's
# own checks and this machine's builds (through DNAT) all use 127.0.0.1:<port>.
REGISTRY_LISTEN = frozenset({"127.0.0.1", "0.0.0.0", "::"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    data_dir: Path = Path("./.shipyard")
    database_url: str | None = None
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Behind a TLS proxy: the addresses whose X-Forwarded-Proto/-For uvicorn believes
    # (comma-separated, "*" for any), so the dashboard sees https and marks its cookies Secure.
    forwarded_allow_ips: str = "127.0.0.1"
    # The dashboard's cookies: None = Secure when the request came over https (directly or
    # from a trusted proxy); true = always Secure (a TLS proxy that sends no header).
    cookie_secure: bool | None = None

    # Pipeline
    registry: str | None = Field(
        default=None, description="External registry host:port[/prefix]; unset = embedded"
    )
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    registry_auth: Literal["basic", "shipyard"] = Field(
        default="basic",
        description="How SHIPYARD_REGISTRY is logged in to: basic (SHIPYARD_REGISTRY_USERNAME/"
        "_PASSWORD, or none) or shipyard (it is another Shipyard's embedded registry: a worker "
        "on another machine; every build gets a credential of its own project signed with "
        "SHIPYARD_SECRET_KEY, no password: docs/workers.md)",
    )
    registry_port: int = 5000
    registry_listen: str = Field(
        default="127.0.0.1",
        description="The embedded registry's bind address: 127.0.0.1, or 0.0.0.0 / :: so "
        "workers on other machines push to it (docs/workers.md)",
    )
    public_url: str | None = Field(
        default=None,
        description="The API's address as workers on other machines see it "
        "(http[s]://host:port); the embedded registry sends clients there for tokens. "
        "Unset = http://127.0.0.1:SHIPYARD_PORT",
    )
    registry_insecure: bool = True
    max_concurrent_builds: int = Field(
        default=2, description="Builds running at once, across every worker (global limit)"
    )
    project_max_running: int | None = Field(
        default=None,
        ge=1,
        description="Builds of one project running at once; unset = only the global limit "
        "(projects still take turns: README, 'Fairness and limits')",
    )
    service_max_running: int = Field(
        default=1,
        ge=0,
        description="Builds of one service or job running at once (Northflank: one); 0 = no limit",
    )
    build_timeout_s: int = 3600
    max_bundle_bytes: int = 512 * 1024 * 1024
    bundle_timeout_s: float = 300.0
    # Uploaded build contexts (``POST /v1/projects/{p}/uploads``): the largest accepted
    # archive (413 above it; extracted, the same cap), and how long one no build was started
    # from is kept before garbage collection deletes it.
    max_upload_bytes: int = 512 * 1024 * 1024
    upload_ttl_s: float = 3600.0
    # API hardening (SECURITY.md "API hardening"): what one project may hold at once.
    max_pending_uploads: int = Field(
        default=8,
        ge=1,
        description="Uploads of one project received or waiting for a build (429 past it)",
    )
    max_queued_builds_per_project: int = Field(
        default=200, ge=1, description="QUEUED builds one project may have (429 past it)"
    )
    max_log_streams_per_project: int = Field(
        default=32, ge=1, description="Live log streams (SSE/websocket) one project may hold open"
    )
    # Supply chain: an SBOM and SLSA provenance attached to every image as OCI referrers
    # (false: neither is made). The provenance's builder id (default: one per instance).
    supply_chain: bool = True
    builder_id: str | None = None
    allow_private_urls: bool = False
    build_network: Literal["isolated", "none", "host"] = Field(
        default="isolated",
        description="RUN steps' network: isolated (outbound only, no host or private "
        "ranges), none, or host (UNSAFE: RUN steps reach every host service)",
    )
    git_timeout_s: float = 600.0
    executor: str = Field(
        default="local",
        description="local | none (API only) | procrastinate (scale-out workers on "
        "PostgreSQL: docs/workers.md)",
    )
    # Scale-out workers (SHIPYARD_EXECUTOR=procrastinate; docs/workers.md)
    worker_sweep_s: float = Field(
        default=10.0, gt=0, description="Seconds between lease sweeps (one worker at a time)"
    )
    build_max_attempts: int = Field(
        default=2,
        ge=1,
        description="Runs a build gets when its worker vanishes: a build whose lease ran out "
        "is re-queued until it has run this often, then ends CRASHED",
    )
    worker_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM a worker claims nothing more; running builds get this long, "
        "then are handed back (re-queued for another worker)",
    )
    worker_watchdog_s: float = Field(
        default=15.0,
        gt=0,
        description="A worker whose heartbeat of a build fails this long stops the build and "
        "hands it back (keep it below SHIPYARD_LEASE_S)",
    )
    heartbeat_s: float = 2.0
    # Set by prepare(): names this instance's build users, namespaces and cgroups.
    instance_id: str = ""
    lease_s: float = 30.0
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM: how long running builds may go on before they are stopped "
        "and end CRASHED (queued builds stay queued for the next start)",
    )
    log_store_fail_after_s: float = Field(
        default=5.0,
        gt=0,
        description="A build whose log lines cannot be stored for this long ends FAILURE",
    )
    disk_reserve_mb: int = Field(
        default=32,
        ge=0,
        description="Space kept free beside the SQLite database and given up when its disk "
        "fills, so builds can still be concluded (0 = none)",
    )
    push_stall_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A push that shows no progress (no output, registry not answering) for "
        "this long fails instead of waiting for the build timeout",
    )

    # Layer cache across workers (docs/build-cache.md; shipyard.pipeline.build_cache)
    stage_cache: bool = Field(
        default=True,
        description="An earlier stage whose inputs (text, base, arguments, the context files "
        "it copies) are unchanged is taken whole from the project's store instead of buildah "
        "re-checking each of its steps (shipyard.pipeline.stage_cache)",
    )
    build_cache_registry: bool | None = Field(
        default=None,
        description="A worker's first build of a service reads and fills a cache repository "
        "per service in the registry (buildah --cache-from/--cache-to). Unset = on for "
        "scale-out executors (workers with stores of their own), off for the local executor "
        "(one store: no fresh workers)",
    )
    build_cache_repository: str = Field(
        default="{service}/cache",
        description="The cache repository inside <registry>/<project>/, with {service} for "
        "the service or job name",
    )

    # Sandbox (SECURITY.md): every build runs rootless as its project's own host user.
    sandbox_dir: Path | None = Field(
        default=None,
        description="Build users' stores and work dirs; default /var/lib/shipyard-sandbox/"
        "<instance id>. Every ancestor must be searchable (o+x) by other users",
    )
    base_images_dir: Path | None = Field(
        default=None,
        description="A root-owned buildah store whose images every project may build FROM "
        "(default <data dir>/base-images)",
    )
    build_memory_mb: int = Field(default=4096, ge=64)
    build_pids: int = Field(default=4096, ge=32)
    build_cpu_shares: int = Field(
        default=512, ge=2, description="weight of a build among the instance's builds"
    )
    build_cpus: float | None = Field(default=None, gt=0, description="hard CPU quota (cores)")
    build_disk_gb: float | None = Field(
        default=20.0,
        gt=0,
        description="Disk per project (layers + work dirs), a sparse ext4 image each; "
        "unset = no cap",
    )
    build_max_log_lines: int = Field(default=100_000, ge=100)
    build_max_log_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    build_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that RUN steps may reach despite the private-range policy",
    )

    # Registry auth (the embedded registry; shipyard/registryauth)
    registry_shared_prefixes: list[str] = Field(
        default=["shared"], description="Repositories under these every project may pull"
    )
    registry_token_service: str = "shipyard-registry"
    registry_token_issuer: str = "shipyard"
    registry_token_ttl_s: int = 300
    registry_pull_credential_ttl_s: int = 8 * 3600

    # Sources
    allowed_local_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories whose git repositories may be built by path or file:// URL "
        "(':'-separated or a JSON list); empty = none",
    )
    max_checkout_bytes: int = 512 * 1024 * 1024
    max_checkout_entries: int = 200_000

    @field_validator("allowed_local_roots", mode="before")
    @classmethod
    def _split_local_roots(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part]
        return value

    # Garbage collection and retention (shipyard/gc; README, "Disk and garbage collection")
    gc_keep_last: int = Field(
        default=10, ge=1, description="Successful images kept per service (newest first)"
    )
    gc_keep_days: float = Field(
        default=14.0, ge=0, description="Images of builds younger than this are kept too"
    )
    gc_interval_s: float = Field(
        default=24 * 3600.0, ge=0, description="Seconds between scheduled collections; 0 = off"
    )
    gc_store_budget_gb: float = Field(
        default=10.0,
        gt=0,
        description="A project's buildah store (layer cache) beyond this after pruning is "
        "emptied: the registry keeps every image, the store is only a cache",
    )

    # Git mirrors, webhooks and notifications (issue 13; docs/webhooks.md)
    git_mirrors: bool = Field(
        default=True,
        description="Keep a bare mirror per project and repository under <data dir>/mirrors "
        "(builds, relevant-commit walks, webhook diffs, branches endpoints); false = fetch "
        "afresh for every build",
    )
    webhook_max_concurrent: int = Field(
        default=16, ge=1, description="Webhook deliveries handled at once per process (429 past it)"
    )
    webhook_max_body_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Larger webhook deliveries get 413"
    )
    webhook_supersede_queued: bool = Field(
        default=False,
        description="A webhook build aborts the same service's still-QUEUED webhook builds",
    )
    notify_allow_private_urls: bool = Field(
        default=False,
        description="Outbound notifications may go to private/loopback addresses",
    )
    notify_max_attempts: int = Field(default=6, ge=1, le=50)
    notify_backoff_s: float = Field(default=2.0, gt=0, description="First retry delay; doubles")
    notify_timeout_s: float = Field(default=10.0, gt=0)
    notify_poll_s: float = Field(default=1.0, gt=0)
    # Log retention (shipyard/gc/log_retention.py; each build's own log is capped by
    # build_max_log_lines / build_max_log_bytes above)
    log_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Logs of builds concluded longer ago than this are removed; 0 = no limit",
    )
    log_retention_max_mb: int = Field(
        default=1024,
        ge=0,
        description="Past this many MiB of stored build logs, the oldest builds' logs are "
        "removed; 0 = no limit",
    )
    log_retention_interval_s: float = Field(
        default=3600.0, ge=0, description="Seconds between log retention runs; 0 = off"
    )

    # Server-side safety
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token GET /metrics requires (the admin token works too); unset = open",
    )

    @model_validator(mode="after")
    def _check_registry(self) -> Settings:
        # Refused at start, not at the first build: a worker with a wrong registry set-up
        # would otherwise take builds and fail every one of them.
        if self.registry_auth == "shipyard":
            if not self.registry:
                raise ValueError(
                    "SHIPYARD_REGISTRY_AUTH=shipyard needs SHIPYARD_REGISTRY=<api host>:<port> "
                    "(without it this instance runs its own embedded registry)"
                )
            if self.registry_username is not None or self.registry_password is not None:
                raise ValueError(
                    "SHIPYARD_REGISTRY_AUTH=shipyard takes no SHIPYARD_REGISTRY_USERNAME/"
                    "_PASSWORD: every build gets a credential of its own project signed with "
                    "SHIPYARD_SECRET_KEY (unset them, or use SHIPYARD_REGISTRY_AUTH=basic)"
                )
        if self.registry_listen not in REGISTRY_LISTEN:
            raise ValueError(
                f"SHIPYARD_REGISTRY_LISTEN={self.registry_listen!r}: one of "
                f"{', '.join(sorted(REGISTRY_LISTEN))} (Shipyard and this machine's builds "
                "reach the registry on 127.0.0.1, so it must listen there too)"
            )
        if self.public_url is not None:
            url = self.public_url.rstrip("/")
            scheme, _, rest = url.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(
                    f"SHIPYARD_PUBLIC_URL={self.public_url!r}: expected http[s]://host[:port] "
                    "(the API's address as workers on other machines see it)"
                )
            self.public_url = url
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'shipyard.db').resolve()}"


class SettingsError(ValueError):
    """Settings that cannot work together; the message is for the operator."""


def load() -> Settings:
    """``Settings()`` from the environment, with a refused combination as one readable
    message (``shipyard up`` / ``shipyard worker`` print it and exit) instead of a trace."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()]
        raise SettingsError("\n".join(lines)) from None


def _load_or_create(path: Path, length: int) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(length)
    # Created 0600 from the start: the file holds a credential.
    fd = path.open("x")
    path.chmod(0o600)
    with fd:
        fd.write(value + "\n")
    return value


def read_instance_id(data_dir: Path) -> str:
    """The id naming this data dir's build users, namespaces and cgroups (``[a-z0-9]``)."""
    raw = (data_dir / "instance-id").read_text().strip()
    return "".join(c for c in raw.lower() if c.isalnum())[:8] or "x"


def prepare(settings: Settings) -> Settings:
    """Fill generated secrets (saved in the data dir) so every later reader sees one value."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Root-only: the DB, keys, tokens and registry storage live here, and build users exist.
    settings.data_dir.chmod(0o700)
    updates: dict[str, object] = {"data_dir": settings.data_dir.resolve()}
    if settings.admin_token is None:
        updates["admin_token"] = SecretStr(_load_or_create(settings.data_dir / "admin-token", 32))
    if settings.secret_key is None:
        updates["secret_key"] = SecretStr(_load_or_create(settings.data_dir / "secret-key", 32))
    _load_or_create(settings.data_dir / "instance-id", 6)
    updates["instance_id"] = read_instance_id(settings.data_dir)
    return settings.model_copy(update=updates)
