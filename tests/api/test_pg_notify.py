"""NOTIFY across machines (PostgreSQL). A line that another process commits through the
store reaches the API's live tails (the JS client's websocket, our CLI's server-sent
events) in under a second, woken by
``shipyard_logs`` rather than by polling, and the tail ends when that process concludes the
build. Aborts are published on ``shipyard_abort`` for workers elsewhere."""

from __future__ import annotations

import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from shipyard.api import app as app_module
from shipyard.api.app import create_app
from shipyard.api.routers import logs as logs_router
from shipyard.api.tail_wakeups import TailWakeups
from shipyard.builds.status import BuildStatus
from shipyard.executors.base import NullExecutor
from shipyard.pipeline.logsink import BuildLog
from shipyard.pipeline.redact import Redactor
from shipyard.store import builds as build_store
from shipyard.store import listen
from shipyard.store import logs as log_store
from shipyard.store.models import Build
from tests.helpers.databases import Database

ROOT = Path(__file__).resolve().parents[2]
LINES = 15
INTERVAL_S = 0.15
BOUND_S = 1.0  # the bound; the re-read safety net alone would take up to 2 s


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_a_line_written_by_another_process_reaches_the_tail_within_a_second(
    postgres_url: str, tmp_path: Path, transport: str
) -> None:
    settings = Database("postgresql", postgres_url).settings(tmp_path)
    assert settings.admin_token is not None
    token = settings.admin_token.get_secret_value()
    latencies: list[float] = []
    got: list[str] = []
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        state = client.app.state.shipyard  # type: ignore[attr-defined]
        assert state.wakeups is not None and state.wakeups.wait_ready(10)
        path = _service(client)
        build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
        tail = _websocket_tail if transport == "websocket" else _sse_tail
        with tail(client, path, build_id, token) as lines:
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.helpers.remote_log_writer",
                    postgres_url,
                    build_id,
                    str(LINES),
                    str(INTERVAL_S),
                ],
                cwd=ROOT,
            )
            watchdog = threading.Thread(target=_end_if_stuck, args=(writer, state, build_id))
            watchdog.start()
            for line in lines:  # until the build concluded
                got.append(line)
                latencies.append(time.time() - float(line.rsplit("sent=", 1)[1]))
            watchdog.join()
    assert writer.returncode == 0
    assert [g.split(" sent=")[0] for g in got] == [f"line {i}" for i in range(LINES)]
    median, worst = statistics.median(latencies), max(latencies)
    print(
        f"\n{transport} tail latency over {LINES} lines: median {median * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms"
    )
    assert worst < BOUND_S, latencies


@contextmanager
def _websocket_tail(
    client: TestClient, path: str, build_id: str, token: str
) -> Iterator[Iterator[str]]:
    """The JS client's tail: each line's text as it arrives, until the server closes."""
    with client.websocket_connect(f"{path}/build-logs?queryType=tail&buildId={build_id}") as ws:
        ws.send_json({"type": "init", "data": {"auth": {"type": "apiToken", "apiToken": token}}})
        assert ws.receive_json() == {"type": "init", "data": {"auth": "successful"}}

        def lines() -> Iterator[str]:
            while True:
                message = ws.receive()
                if message["type"] == "websocket.close":
                    return
                data = json.loads(message["text"])
                assert data["type"] == "log-lines", data
                yield from (line["log"] for line in data["data"])

        yield lines()


@contextmanager
def _sse_tail(client: TestClient, path: str, build_id: str, token: str) -> Iterator[Iterator[str]]:
    """Our CLI's tail (server-sent events): each line's text, until the ``end`` event."""
    with client.stream("GET", f"{path}/build-logs/stream", params={"buildId": build_id}) as r:
        assert r.status_code == 200

        def lines() -> Iterator[str]:
            event = None
            for raw in r.iter_lines():
                if raw.startswith("event: "):
                    event = raw.removeprefix("event: ")
                elif raw.startswith("data: "):
                    if event == "end":
                        return
                    yield json.loads(raw.removeprefix("data: "))["log"]

        yield lines()


def _end_if_stuck(writer: subprocess.Popen[bytes], state: object, build_id: str) -> None:
    """A writer that died must not leave the tail waiting forever: conclude its build."""
    try:
        writer.wait(timeout=60)
    except subprocess.TimeoutExpired:
        writer.kill()
        writer.wait()
    if writer.returncode != 0:
        with state.sessions() as session:  # type: ignore[attr-defined]
            session.execute(
                update(Build)
                .where(Build.id == build_id)
                .values(concluded=True, status=BuildStatus.FAILURE)
            )
            session.commit()


def test_aborts_and_conclusions_are_published(postgres_url: str, tmp_path: Path) -> None:
    """``shipyard_abort`` (payload: the build id) when a running build is asked to stop — a
    worker on any machine stops it at once; ``shipyard_logs`` when a queued build is concluded
    by its abort — its tails end at once."""
    heard: queue.Queue[tuple[str, str | None]] = queue.Queue()
    listener = listen.Listener(postgres_url, [listen.ABORT, listen.LOGS], name="test-abort")
    for channel in (listen.ABORT, listen.LOGS):
        listener.subscribe(channel, lambda payload, c=channel: heard.put((c, payload)))
    listener.start()
    settings = Database("postgresql", postgres_url).settings(tmp_path)
    try:
        with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
            assert settings.admin_token is not None
            client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
            path = _service(client)
            running, queued = (
                client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
                for _ in range(2)
            )
            with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
                assert build_store.claim(session, running, "elsewhere") == 1
                session.commit()
            assert listener.wait_ready(10)
            _drain(heard)
            assert client.delete(f"{path}/build/{running}").status_code == 200
            assert heard.get(timeout=10) == (listen.ABORT, running)
            assert client.delete(f"{path}/build/{queued}").status_code == 200
            assert heard.get(timeout=10) == (listen.LOGS, queued)
    finally:
        listener.stop()


def _service(client: TestClient) -> str:
    assert client.post("/v1/projects", json={"name": "abort"}).status_code == 200
    body = {"name": "svc", "vcsData": {"projectUrl": "file:///nowhere"}}
    assert client.post("/v1/projects/abort/services/build", json=body).status_code == 200
    return "/v1/projects/abort/services/svc"


def _drain(heard: queue.Queue[Any]) -> None:
    """Forget what was heard so far (the connect's ``None``, the set-up's own notices)."""
    while not heard.empty():
        heard.get_nowait()


def test_without_notifications_tails_still_get_every_line(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener that cannot connect (here: a wrong address) costs latency, not lines: tails
    re-read every TAIL_REREAD_S on their own (shortened here; each write waits until the tail
    surely sleeps in that wait)."""
    monkeypatch.setattr(logs_router, "TAIL_REREAD_S", 0.2)
    unreachable = listen.Listener("postgresql://127.0.0.1:1/none", [listen.LOGS], name="nowhere")
    monkeypatch.setattr(app_module, "_tail_wakeups", lambda _engine: TailWakeups(unreachable))
    settings = Database("postgresql", postgres_url).settings(tmp_path)
    assert settings.admin_token is not None
    token = settings.admin_token.get_secret_value()
    with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        path = _service(client)
        build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
        with client.websocket_connect(f"{path}/build-logs?queryType=tail&buildId={build_id}") as ws:
            ws.send_json(
                {"type": "init", "data": {"auth": {"type": "apiToken", "apiToken": token}}}
            )
            assert ws.receive_json()["data"] == {"auth": "successful"}
            time.sleep(0.5)
            with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
                log_store.append(session, build_id, 0, 0, [(datetime.now(UTC), "unheralded")])
                session.commit()
            assert [x["log"] for x in ws.receive_json()["data"]] == ["unheralded"]
            time.sleep(0.5)
            assert client.delete(f"{path}/build/{build_id}").status_code == 200
            assert ws.receive()["type"] == "websocket.close"  # concluded: the tail ends
    assert unreachable.connects == 0


def test_the_build_log_writer_publishes_each_chunk_and_the_conclusion(
    postgres_url: str, tmp_path: Path
) -> None:
    """What a worker's pipeline writes (pipeline/logsink.py) wakes tails on every machine."""
    heard: queue.Queue[str | None] = queue.Queue()
    listener = listen.Listener(postgres_url, [listen.LOGS], name="test-logsink")
    listener.subscribe(listen.LOGS, heard.put)
    listener.start()
    settings = Database("postgresql", postgres_url).settings(tmp_path)
    try:
        with TestClient(create_app(settings, lambda *_: NullExecutor())) as client:
            assert settings.admin_token is not None
            client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
            path = _service(client)
            build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
            sessions = client.app.state.shipyard.sessions  # type: ignore[attr-defined]
            with sessions() as session:
                assert build_store.claim(session, build_id, "w") == 1
                session.commit()
            assert listener.wait_ready(10)
            _drain(heard)
            sink = BuildLog(sessions, build_id, 1, Redactor([]))
            sink("==> BUILDING")
            assert sink.flush()
            assert heard.get(timeout=10) == build_id
            sink.close()
            with sessions() as session:
                assert build_store.conclude(session, build_id, 1, BuildStatus.SUCCESS, "ok")
                session.commit()
            assert heard.get(timeout=10) == build_id
    finally:
        listener.stop()
