"""POST …/build/{id}/rerun: a new build of the same source with the same overrides (secrets
included, reopened server-side), under the start-build permission."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from shipyard.builds.permissions import Permission
from shipyard.builds.rerun import request_of
from shipyard.settings import Settings
from shipyard.store import tokens as token_store
from shipyard.store.crypto import SecretBox
from shipyard.store.db import make_engine, make_sessionmaker
from shipyard.store.models import Build
from tests.conftest import SHA, Factory


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_rerun_keeps_source_and_overrides(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project()
    factory.workload(project, "services/build", "api", branch=None)
    body = {
        "branch": "feature/x",
        "sha": SHA,
        "overrides": {
            "buildArguments": {"GREETING": "hi"},
            "buildFiles": {"/conf/app.env": {"data": _b64("A=1\n")}},
            "dockerSecretMounts": {"npm": {"data": _b64("npm-token")}},
            "docker": {"dockerFilePath": "/sub/Dockerfile", "dockerfileTarget": "final"},
        },
    }
    first = factory.ok("POST", f"/v1/projects/{project}/services/api/build", json=body)
    again = factory.ok("POST", f"/v1/projects/{project}/services/api/build/{first['id']}/rerun")
    assert again["id"] != first["id"] and again["status"] == "QUEUED"
    assert again["branch"] == "feature/x" and again["sha"] == SHA
    assert "npm-token" not in str(again)

    assert settings.secret_key is not None
    box = SecretBox(settings.secret_key.get_secret_value())
    with make_sessionmaker(make_engine(settings.resolved_database_url))() as session:
        a = request_of(box, session.get(Build, first["id"]))  # type: ignore[arg-type]
        b = request_of(box, session.get(Build, again["id"]))  # type: ignore[arg-type]
    assert a == b
    assert b.overrides.secret_mounts["npm"].data == b"npm-token"
    assert b.overrides.docker.target == "final"


def test_rerun_needs_the_start_permission_and_an_existing_build(
    settings: Settings, client: TestClient, factory: Factory
) -> None:
    project = factory.project()
    factory.workload(project, "services/combined", "web")
    factory.workload(project, "jobs/manual", "migrate")
    build = factory.ok("POST", f"/v1/projects/{project}/services/web/build", json={})
    missing = client.post(f"/v1/projects/{project}/services/web/build/nope-0000/rerun")
    assert missing.status_code == 404
    job = factory.ok("POST", f"/v1/projects/{project}/jobs/migrate/build", json={})
    rerun_job = client.post(f"/v1/projects/{project}/jobs/migrate/build/{job['id']}/rerun")
    assert rerun_job.status_code == 200, rerun_job.text
    with make_sessionmaker(make_engine(settings.resolved_database_url))() as session:
        _, reader = token_store.create(
            session, name="r", permissions=[Permission.SERVICES_READ.value], project_id=project
        )
        session.commit()
    refused = client.post(
        f"/v1/projects/{project}/services/web/build/{build['id']}/rerun",
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert refused.status_code == 403
