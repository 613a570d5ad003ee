"""Hostile-tenant finding: live log streams were unbounded, each holding a poll loop (and on
SSE a worker thread at start) for as long as the build runs. Now a project may hold
SHIPYARD_MAX_LOG_STREAMS_PER_PROJECT (32) at once, SSE and websocket together: 429 past it
(on a websocket: an error message with status 429 and close 4029, after the auth)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from shipyard.api.guards import slots
from shipyard.settings import Settings
from tests.api.test_log_stream import init_message, seed, tail_url
from tests.api.test_start_build_rules import assert_error


def held(client: TestClient, project: str) -> int:
    return slots(client.app, "log_streams").held(project)


def test_default() -> None:
    assert Settings.model_fields["max_log_streams_per_project"].default == 32


def test_streams_past_the_cap_get_429(
    client: TestClient, settings: Settings, targets: dict[str, str]
) -> None:
    settings.max_log_streams_per_project = 1
    project = targets["project"]
    path = f"/v1/projects/{project}/services/{targets['build']}"
    live = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]  # QUEUED
    with client.websocket_connect(tail_url(path, live)) as first:
        first.send_json(init_message(client))
        assert first.receive_json() == {"type": "init", "data": {"auth": "successful"}}
        assert held(client, project) == 1

        refused = client.get(f"{path}/build-logs/stream", params={"buildId": live})
        error = assert_error(refused, 429, "SHIPYARD_MAX_LOG_STREAMS_PER_PROJECT")
        assert error["id"] == "rate-limited" and refused.headers["Retry-After"].isdigit()

        with client.websocket_connect(tail_url(path, live)) as second:
            second.send_json(init_message(client))
            message = second.receive_json()
            assert message["type"] == "error" and message["data"]["status"] == 429
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 4029
        assert held(client, project) == 1
        first.close()
    # The first socket's slot comes back when it ends.
    client.delete(f"{path}/build/{live}")
    for _ in range(200):
        if held(client, project) == 0:
            break
        time.sleep(0.05)
    assert held(client, project) == 0
    _, done = seed(client, targets)
    ok = client.get(f"{path}/build-logs/stream", params={"buildId": done})
    assert ok.status_code == 200 and "event: end" in ok.text
    assert held(client, project) == 0  # an SSE stream gives its slot back when it ends


def test_refused_and_failed_streams_hold_nothing(
    client: TestClient, settings: Settings, targets: dict[str, str]
) -> None:
    project = targets["project"]
    path = f"/v1/projects/{project}/services/{targets['build']}"
    for _ in range(3):
        r = client.get(f"{path}/build-logs/stream", params={"buildId": "no-such-build"})
        assert_error(r, 404)
        r = client.get(f"{path}/build-logs/stream", headers={"Authorization": "Bearer nope"})
        assert_error(r, 401)
        # An anonymous socket that never authenticates holds no slot of the project.
        with client.websocket_connect(tail_url(path, "x")) as ws:
            assert held(client, project) == 0
            ws.send_json({"type": "init", "data": {"auth": {"apiToken": "nope"}}})
            assert ws.receive_json()["data"]["auth"] == "failed"
    assert held(client, project) == 0


def test_one_project_does_not_starve_another(
    client: TestClient, settings: Settings, targets: dict[str, str]
) -> None:
    settings.max_log_streams_per_project = 2
    from shipyard.builds.errors import TooManyRequests

    pool = slots(client.app, "log_streams")
    pool.acquire("someone-else", 2, TooManyRequests("x"))
    pool.acquire("someone-else", 2, TooManyRequests("x"))
    try:
        path, done = seed(client, targets)
        ok = client.get(f"{path}/build-logs/stream", params={"buildId": done})
        assert ok.status_code == 200, ok.text
    finally:
        pool.release("someone-else")
        pool.release("someone-else")


def test_a_stream_gives_its_slot_back_when_the_client_leaves() -> None:
    """The SSE response's slot comes back on a disconnect mid-stream (a live build's stream
    never ends by itself)."""
    import asyncio
    from collections.abc import AsyncIterator

    from shipyard.api.guards import GuardedStream, Held, Slots
    from shipyard.builds.errors import TooManyRequests

    pool = Slots()
    held = Held(pool, "p")
    held.take(1, TooManyRequests("full"))

    async def endless() -> AsyncIterator[str]:
        while True:
            yield ": ping\n\n"
            await asyncio.sleep(0.01)

    async def run() -> None:
        response = GuardedStream(held, endless(), media_type="text/event-stream")

        async def receive() -> dict[str, str]:
            await asyncio.sleep(0.1)
            return {"type": "http.disconnect"}

        async def send(_: object) -> None:
            return None

        scope = {"type": "http", "asgi": {"spec_version": "2.0"}, "method": "GET"}
        await asyncio.wait_for(response(scope, receive, send), timeout=5)

    asyncio.run(run())
    assert pool.held("p") == 0
    held.release()  # a second release is a no-op
    assert pool.held("p") == 0
