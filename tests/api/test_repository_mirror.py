"""``GET …/branches`` and ``…/pull-requests`` read the project's mirror (not ls-remote): only
new objects are fetched, deleted branches are pruned, and each project has its own mirror."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipyard.api.app import create_app
from shipyard.executors.base import NullExecutor
from shipyard.pipeline.mirror import MirrorStore
from shipyard.settings import Settings, prepare
from tests.conftest import Factory
from tests.helpers.upstream import Upstream


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return prepare(Settings(data_dir=tmp_path / "data", admin_token=None, secret_key=None,
                            allowed_local_roots=[tmp_path], allow_private_urls=True))  # fmt: skip


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as c:
        assert settings.admin_token is not None
        c.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        yield c


def test_branches_and_pull_requests_come_from_the_mirror(
    factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    up = Upstream(tmp_path / "git")
    main = up.commit({"a.txt": "1\n"}, "one")
    topic = up.commit({"b.txt": "2\n"}, "two", branch="topic")
    up.set_ref("refs/pull/3/head", topic)
    first, second = factory.project("One"), factory.project("Two")
    svc = factory.workload(first, "services/combined", "web", url=up.url)
    base = f"/v1/projects/{first}/services/{svc}"
    branches = factory.ok("GET", f"{base}/branches")["branches"]
    assert {b["name"]: b["commit"]["sha"] for b in branches} == {"main": main, "topic": topic}
    [pr] = factory.ok("GET", f"{base}/pull-requests")["pullRequests"]
    assert pr["id"] == 3 and pr["sha"] == topic
    mirror = MirrorStore(settings.data_dir / "mirrors").path(first, up.url)
    assert (mirror / "HEAD").is_file()
    assert up.url not in (mirror / "config").read_text()
    # A new commit shows; a deleted branch is pruned from the mirror.
    newer = up.commit({"a.txt": "3\n"}, "three", branch="main")
    up.git("push", "-q", str(up.bare), ":topic")
    branches = factory.ok("GET", f"{base}/branches")["branches"]
    assert {b["name"]: b["commit"]["sha"] for b in branches} == {"main": newer}
    # Another project's listing of the same repository uses a mirror of its own.
    other = factory.workload(second, "services/combined", "web", url=up.url)
    factory.ok("GET", f"/v1/projects/{second}/services/{other}/branches")
    assert MirrorStore(settings.data_dir / "mirrors").path(second, up.url) != mirror
    assert (MirrorStore(settings.data_dir / "mirrors").path(second, up.url) / "HEAD").is_file()
