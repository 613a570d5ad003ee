"""The dashboard's own queries (filters, log pages, search, summary lines) on PostgreSQL, in
a fresh database on the machine's PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.settings import Settings, prepare
from shipyard.store import logs as log_store
from shipyard.store.db import make_engine, make_sessionmaker
from tests.helpers.pg import scratch_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with scratch_database("shipyard_dash") as url:
        yield url


def test_dashboard_pages_on_postgres(pg_url: str, tmp_path: Path) -> None:
    settings = prepare(Settings(data_dir=tmp_path / "data", database_url=pg_url))
    assert settings.admin_token is not None
    token = settings.admin_token.get_secret_value()
    with TestClient(create_app(settings, lambda *_: NullExecutor()), follow_redirects=False) as c:
        auth = {"Authorization": f"Bearer {token}"}
        project = c.post("/v1/projects", json={"name": "pg"}, headers=auth).json()["data"]["id"]
        body = {"name": "svc", "vcsData": {"projectUrl": "file:///r"}}
        assert c.post(f"/v1/projects/{project}/services/build", json=body, headers=auth).is_success
        path = f"/v1/projects/{project}/services/svc/build"
        main = c.post(path, json={"branch": "main"}, headers=auth).json()["data"]["id"]
        other = c.post(path, json={"branch": "dev"}, headers=auth).json()["data"]["id"]
        with make_sessionmaker(make_engine(pg_url))() as session:
            now = datetime.now(UTC)
            lines = ["==> cloning", "==> building", "[1/2] STEP 1/2: FROM x", "--> Using cache 1"]
            lines += [f"Line {i} 100% done_ok" for i in range(3000)]
            log_store.append(session, main, 1, 0, [(now, line) for line in lines])
            session.commit()

        form = c.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        assert c.post("/signin", data={"token": token, "csrf": csrf.group(1)}).status_code == 303
        base = f"/ui/projects/{project}/services/svc"
        page = c.get(base, params={"branch": "dev"}).text
        assert other in page and main not in page
        assert main in c.get(base, params={"status": "active"}).text
        build = c.get(f"{base}/builds/{main}").text
        assert "[1/2]" in build and "1 from cache" in build
        log = c.get(f"{base}/builds/{main}/log", params={"tail": 10}).json()
        assert log["total"] == 3004 and log["lines"][-1]["log"] == "Line 2999 100% done_ok"
        # ILIKE with % and _ taken literally.
        hits = c.get(f"{base}/builds/{main}/log/search", params={"q": "line 2999 100%"}).json()
        assert [m["n"] for m in hits["matches"]] == [3003]
        assert (
            c.get(f"{base}/builds/{main}/log/search", params={"q": "e_1"}).json()["matches"] == []
        )
