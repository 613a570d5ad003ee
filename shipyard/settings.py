"""Configuration, built once at start and passed down (never read from globals)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    data_dir: Path = Path("./.shipyard")
    database_url: str | None = None
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    # Pipeline
    registry: str | None = Field(
        default=None, description="External registry host:port[/prefix]; unset = embedded"
    )
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    registry_port: int = 5000
    registry_insecure: bool = True
    max_concurrent_builds: int = 2
    build_timeout_s: int = 3600
    max_bundle_bytes: int = 512 * 1024 * 1024
    bundle_timeout_s: float = 300.0
    allow_private_urls: bool = False
    build_network: str = Field(
        default="host", description="buildah --network for RUN steps: host, none or a CNI name"
    )
    git_timeout_s: float = 600.0
    executor: str = Field(default="local", description="local | none (API only)")
    heartbeat_s: float = 2.0
    lease_s: float = 30.0

    # Server-side safety
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token GET /metrics requires (the admin token works too); unset = open",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'shipyard.db').resolve()}"


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


def prepare(settings: Settings) -> Settings:
    """Fill generated secrets (saved in the data dir) so every later reader sees one value."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    updates: dict[str, object] = {"data_dir": settings.data_dir.resolve()}
    if settings.admin_token is None:
        updates["admin_token"] = SecretStr(_load_or_create(settings.data_dir / "admin-token", 32))
    if settings.secret_key is None:
        updates["secret_key"] = SecretStr(_load_or_create(settings.data_dir / "secret-key", 32))
    return settings.model_copy(update=updates)
