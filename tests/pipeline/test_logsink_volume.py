"""A build's log under volume (issue 11, item 9): lines up to the cap are all stored however
fast they come (the writer catches up in larger batches), the cap is marked once with where
and which limit, later output is dropped, and lines that look like Shipyard's own (``==> …``)
cannot carry output past the cap."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.logsink import MAX_LINES_AFTER_CAP, BuildLog, LogLimits
from shipyard.pipeline.redact import Redactor
from shipyard.store.models import BuildLogLine
from tests.conftest import Factory


def _stored(sessions: sessionmaker[Session], build_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(BuildLogLine.line)
                .where(BuildLogLine.build_id == build_id)
                .order_by(BuildLogLine.seq)
            )
        )


def test_a_flood_is_stored_up_to_the_cap_then_marked(
    client: TestClient, factory: Factory, targets: dict[str, str]
) -> None:
    sessions: sessionmaker[Session] = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}/build"
    build_id = str(factory.ok("POST", path, json={"branch": "main"})["id"])
    sink = BuildLog(sessions, build_id, 1, Redactor([]), LogLimits(max_lines=150_000))
    for i in range(400_000):  # as fast as a loop can: far faster than single-row commits
        sink(str(i))
    for i in range(100):
        sink(f"==> not shipyard {i}")
    sink.close(timeout_s=120)
    lines = _stored(sessions, build_id)
    assert lines[:150_000] == [str(i) for i in range(150_000)]  # none dropped
    assert lines[150_000] == (
        "… log truncated at line 150000 (938890 bytes; SHIPYARD_BUILD_MAX_LOG_LINES=150000): "
        "the build goes on, its further output is not stored"
    )
    assert len(lines) == 150_001 + MAX_LINES_AFTER_CAP
