"""``GET /healthz`` and ``GET /readyz`` (issue 11, item 8): no authentication, 503 with a
body naming the failing check — a real embedded registry stopped, a database that takes no
writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.health import checks
from shipyard.health.checks import Check
from shipyard.pipeline.net import free_port
from shipyard.pipeline.registry import EmbeddedRegistry
from shipyard.settings import Settings
from shipyard.store.db import make_sessionmaker


class RegistryOnly(NullExecutor):
    """An executor whose only part is a real embedded registry (the runtime's check)."""

    def __init__(self, registry: EmbeddedRegistry) -> None:
        self.registry = registry

    def health(self) -> list[Check]:
        return [checks.registry_answering(self.registry, self.registry.target, timeout_s=1)]


@pytest.fixture
def anonymous(client: TestClient) -> TestClient:
    client.headers.pop("Authorization")
    return client


def test_healthz_answers_without_auth_or_database(anonymous: TestClient) -> None:
    r = anonymous.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_checks_the_database(anonymous: TestClient) -> None:
    r = anonymous.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "failing": [], "checks": {"database": {"ok": True}}}


@pytest.mark.sqlite_only  # a read-only SQLite file; PostgreSQL: tests/store/test_postgres_dbload.py
def test_readyz_fails_when_the_database_takes_no_writes(
    anonymous: TestClient, settings: Settings
) -> None:
    database = settings.data_dir / "shipyard.db"
    read_only = create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    anonymous.app.state.shipyard.sessions = make_sessionmaker(read_only)  # type: ignore[attr-defined]
    r = anonymous.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["failing"] == ["database"]
    assert "does not take writes" in body["checks"]["database"]["message"]
    read_only.dispose()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    reg = EmbeddedRegistry(tmp_path / "registry-data", free_port())
    reg.start()
    yield reg
    reg.stop()


def test_readyz_goes_503_when_the_registry_is_stopped(
    settings: Settings, registry: EmbeddedRegistry
) -> None:
    app = create_app(settings, lambda *_: RegistryOnly(registry))
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["registry"] == {"ok": True}
        registry.stop()
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["failing"] == ["registry"]
        assert body["checks"]["registry"]["message"] == (
            f"the embedded registry on 127.0.0.1:{registry.port} is not answering"
        )
        assert body["checks"]["database"] == {"ok": True}
        assert c.get("/healthz").status_code == 200  # alive all the same
