"""Outbound notifications: a loopback receiver gets a signed JSON body per concluded build,
retried with backoff after a failure; attempts are recorded; the address policy holds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.builds.status import BuildStatus
from shipyard.executors.base import NullExecutor
from shipyard.notify.signing import verify
from shipyard.settings import Settings, prepare
from shipyard.store import builds as build_store
from tests.conftest import Factory
from tests.helpers.receiver import receiver, wait_for
from tests.store.test_postgres import pg_url  # noqa: F401 (fixture)


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return prepare(Settings(data_dir=tmp_path / "data", admin_token=None, secret_key=None,
                            notify_backoff_s=0.05, notify_poll_s=0.05, **extra))  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """On SQLite and on a scratch PostgreSQL database."""
    database = (
        {"database_url": request.getfixturevalue("pg_url")} if request.param != "sqlite" else {}
    )
    settings = _settings(tmp_path, notify_allow_private_urls=True, **database)
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


def _deliveries(factory: Factory, project: str, state: str) -> list[Any]:
    deadline = time.monotonic() + 30
    while True:
        rows = factory.ok("GET", f"/v1/projects/{project}/notifications/deliveries")["deliveries"]
        if rows and all(r["state"] == state for r in rows):
            return list(rows)
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def test_signed_notification_per_concluded_build_with_retries(factory: Factory) -> None:
    project = factory.project(f"Notified {uuid.uuid4().hex[:8]}")
    web = factory.workload(project, "services/combined", "web")
    with receiver(answers=[500]) as rx:
        endpoint = factory.ok("POST", f"/v1/projects/{project}/notifications",
                              json={"url": rx.url, "onStart": False})  # fmt: skip
        secret = endpoint["secret"]
        listed = factory.ok("GET", f"/v1/projects/{project}/notifications")["endpoints"]
        assert listed == [{k: v for k, v in endpoint.items() if k != "secret"}]
        path = f"/v1/projects/{project}/services/{web}/build"
        build = factory.ok("POST", path, json={})
        factory.ok("DELETE", f"{path}/{build['id']}")  # a queued build concludes ABORTED
        first, second = wait_for(rx, 2)
        for request in (first, second):
            assert verify(secret, request.body, request.headers["x-shipyard-signature-256"])
            assert request.headers["x-shipyard-event"] == "build.concluded"
        payload = json.loads(second.body)
        assert payload["event"] == "build.concluded" and payload["serviceId"] == web
        assert payload["build"]["id"] == build["id"] and payload["build"]["status"] == "ABORTED"
        assert payload["build"]["concluded"] is True
        [row] = _deliveries(factory, project, "delivered")
        assert [a.get("status") for a in row["attempts"]] == [500, 200]
        assert row["buildId"] == build["id"]


def test_private_addresses_refused_unless_allowed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        factory = Factory(c)
        project = factory.project("Strict")
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/x", "ftp://example.com/x",
                    "http://user:pw@example.com/x"):  # fmt: skip
            r = c.post(f"/v1/projects/{project}/notifications", json={"url": url})
            assert r.status_code == 400, (url, r.text)
        assert (
            "SHIPYARD_NOTIFY_ALLOW_PRIVATE_URLS"
            in c.post(
                f"/v1/projects/{project}/notifications", json={"url": "http://127.0.0.1/x"}
            ).json()["error"]["message"]
        )


def test_on_start_sends_started_then_concluded(factory: Factory) -> None:
    project = factory.project(f"Started {uuid.uuid4().hex[:8]}")
    web = factory.workload(project, "services/combined", "web")
    with receiver() as rx:
        endpoint = factory.ok("POST", f"/v1/projects/{project}/notifications",
                              json={"url": rx.url, "onStart": True})  # fmt: skip
        build = factory.ok("POST", f"/v1/projects/{project}/services/{web}/build", json={})
        # A worker claims the build (it starts), then concludes it: the executor's own writes.
        state = factory.client.app.state.shipyard  # type: ignore[attr-defined]
        with state.sessions() as session:
            attempt = build_store.claim(session, build["id"], "test-worker")
            session.commit()
        assert attempt is not None
        wait_for(rx, 1)
        with state.sessions() as session:
            build_store.conclude(session, build["id"], attempt, BuildStatus.SUCCESS, "done")
            session.commit()
        requests = wait_for(rx, 2)
        events = [json.loads(r.body)["event"] for r in requests]
        assert events == ["build.started", "build.concluded"]
        for request in requests:
            assert verify(endpoint["secret"], request.body,
                          request.headers["x-shipyard-signature-256"])  # fmt: skip
