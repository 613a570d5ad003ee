"""Build logs over HTTP: range filters and the server-sent event stream (ids, resume, end);
hostile patterns (RE2) and the websocket tail."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from shipyard.store import logs as log_store
from tests.api.test_start_build_rules import assert_error


def seed(client: TestClient, targets: dict[str, str]) -> tuple[str, str]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        (t0 + timedelta(seconds=i), f"line {i}{' error' if i % 3 == 0 else ''}") for i in range(10)
    ]
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        log_store.append(session, build_id, 1, 0, lines)
        session.commit()
    client.delete(f"{path}/build/{build_id}")  # concluded: streams end
    return path, build_id


def test_range_filters(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)

    def get(**params: object) -> list[str]:
        response = client.get(f"{path}/build-logs", params={"buildId": build_id, **params})
        return [x["log"] for x in response.json()["data"]]

    assert get() == [f"line {i}{' error' if i % 3 == 0 else ''}" for i in range(10)]
    assert get(lineLimit=2) == ["line 0 error", "line 1"]
    assert get(lineLimit=2, direction="backward") == ["line 9 error", "line 8"]
    assert get(textIncludes="error") == [
        "line 0 error",
        "line 3 error",
        "line 6 error",
        "line 9 error",
    ]
    assert get(regexIncludes=r"line [12]$") == ["line 1", "line 2"]
    assert get(startTime="2026-01-01T00:00:08Z") == ["line 8", "line 9 error"]
    assert get(endTime="2026-01-01T00:00:01.000Z") == ["line 0 error", "line 1"]
    assert_error(
        client.get(f"{path}/build-logs", params={"buildId": build_id, "regexIncludes": "("}),
        400,
        "regexIncludes",
    )
    # Without buildId: the latest build's log (Northflank's default).
    latest = client.get(f"{path}/build-logs").json()["data"]
    assert [x["log"] for x in latest] == get()
    assert_error(
        client.get(f"{path}/build-logs", params={"buildId": build_id, "direction": "sideways"}),
        400,
        "direction",
    )


def events(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        out.append(fields)
    return out


def test_stream_ids_resume_and_end(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)
    everything = events(client.get(f"{path}/build-logs/stream", params={"buildId": build_id}).text)
    assert [e["id"] for e in everything[:-1]] == [str(i) for i in range(10)]
    assert json.loads(everything[0]["data"])["log"] == "line 0 error"
    assert everything[-1]["event"] == "end"
    assert json.loads(everything[-1]["data"])["status"] == "ABORTED"
    resumed = events(
        client.get(
            f"{path}/build-logs/stream",
            params={"buildId": build_id},
            headers={"Last-Event-ID": "7"},
        ).text
    )
    assert [e.get("id") for e in resumed] == ["8", "9", None]
    after = events(
        client.get(f"{path}/build-logs/stream", params={"buildId": build_id, "after": 8}).text
    )
    assert [e.get("id") for e in after] == ["9", None]


# --- hostile patterns and the websocket tail -------------------------------------------------

EVIL = r"^(a+)+$"  # exponential in Python's re against "aaaa…b"


def seed_long_lines(client: TestClient, targets: dict[str, str]) -> tuple[str, str]:
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [(t0, "a" * 4000 + "b") for _ in range(300)]
    lines += [(t0, "aaaa"), (t0, "a" * 4000)]
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        log_store.append(session, build_id, 1, 0, lines)
        session.commit()
    client.delete(f"{path}/build/{build_id}")
    return path, build_id


def test_catastrophic_pattern_is_linear_and_others_are_served(
    client: TestClient, targets: dict[str, str]
) -> None:
    path, build_id = seed_long_lines(client, targets)
    results: dict[str, Any] = {}

    def hostile() -> None:
        response = client.get(
            f"{path}/build-logs", params={"buildId": build_id, "regexIncludes": EVIL}
        )
        results["hostile"] = response

    worker = threading.Thread(target=hostile)
    worker.start()
    # A second client meanwhile: answered (with Python's re it waited behind the GIL).
    others = [client.get(f"{path}/build/{build_id}").status_code for _ in range(5)]
    worker.join()
    assert others == [200] * 5
    response = results["hostile"]
    assert response.status_code == 200, response.text
    assert [x["log"] for x in response.json()["data"]] == ["aaaa", "a" * 4000]
    excluded = client.get(
        f"{path}/build-logs",
        params={"buildId": build_id, "regexNotIncludes": EVIL, "lineLimit": 1},
    ).json()["data"]
    assert excluded[0]["log"] == "a" * 4000 + "b"


@pytest.mark.parametrize("field", ["regexIncludes", "regexNotIncludes"])
@pytest.mark.parametrize("pattern", ["(", r"(a)\1", "(?=a)b", "(?<!x)y", "a" * 300])
def test_unsupported_patterns_are_a_400_naming_the_field(
    client: TestClient, targets: dict[str, str], field: str, pattern: str
) -> None:
    path, build_id = seed(client, targets)
    for suffix in ("build-logs", "build-logs/stream"):
        response = client.get(f"{path}/{suffix}", params={"buildId": build_id, field: pattern})
        assert_error(response, 400, field)


def test_stream_applies_the_filters(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)
    got = events(
        client.get(
            f"{path}/build-logs/stream",
            params={"buildId": build_id, "regexIncludes": r"error$", "textNotIncludes": "line 3"},
        ).text
    )
    assert [e.get("id") for e in got] == ["0", "6", "9", None]
    assert got[-1]["event"] == "end"


def tail_url(path: str, build_id: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in {"buildId": build_id, **params}.items())
    return f"{path}/build-logs?queryType=tail&{query}"


def init_message(client: TestClient) -> dict[str, Any]:
    token = client.headers["Authorization"].split(" ", 1)[1]
    return {"type": "init", "data": {"auth": {"type": "apiToken", "apiToken": token}}}


def test_websocket_tail_with_a_hostile_filter(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed_long_lines(client, targets)
    with client.websocket_connect(tail_url(path, build_id, regexIncludes=EVIL)) as ws:
        ws.send_json(init_message(client))
        assert ws.receive_json() == {"type": "init", "data": {"auth": "successful"}}
        lines: list[str] = []
        while len(lines) < 2:
            message = ws.receive_json()
            assert message["type"] == "log-lines"
            lines += [x["log"] for x in message["data"]]
        assert lines == ["aaaa", "a" * 4000]
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_websocket_tail_refuses_an_invalid_filter(
    client: TestClient, targets: dict[str, str]
) -> None:
    path, build_id = seed(client, targets)
    with client.websocket_connect(tail_url(path, build_id, regexIncludes=r"(a)\1")) as ws:
        message = ws.receive_json()
        assert message["type"] == "error"
        assert message["data"]["status"] == 400
        assert message["data"]["details"] == {"regexIncludes": "invalid"}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4000


def test_websocket_binary_frame_gets_a_clean_error(
    client: TestClient, targets: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    path, build_id = seed(client, targets)
    with caplog.at_level(logging.DEBUG), client.websocket_connect(tail_url(path, build_id)) as ws:
        ws.send_bytes(b"\x00\xffnot json")
        message = ws.receive_json()
        assert message["type"] == "error"
        assert "text frame" in message["data"]["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1003  # unsupported data
    assert not [r for r in caplog.records if r.exc_info], caplog.text


# --- lineLimit / startTime on the live tail (Northflank: the most recent lines, then live) ----


def seed_running(client: TestClient, targets: dict[str, str]) -> tuple[str, str]:
    """Ten lines on a build that has not concluded (no executor: it stays QUEUED)."""
    path = f"/v1/projects/{targets['project']}/services/{targets['build']}"
    build_id = client.post(f"{path}/build", json={"branch": "main"}).json()["data"]["id"]
    append(client, build_id, 0, 10)
    return path, build_id


def append(client: TestClient, build_id: str, first: int, count: int) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        (t0 + timedelta(seconds=i), f"line {i}{' error' if i % 3 == 0 else ''}")
        for i in range(first, first + count)
    ]
    with client.app.state.shipyard.sessions() as session:  # type: ignore[attr-defined]
        log_store.append(session, build_id, 1, first, lines)
        session.commit()


def tail_lines(ws: Any, count: int) -> list[str]:
    lines: list[str] = []
    while len(lines) < count:
        message = ws.receive_json()
        assert message["type"] == "log-lines", message
        lines += [x["log"] for x in message["data"]]
    return lines


@pytest.mark.parametrize(
    ("params", "first", "live"),
    [
        ({"lineLimit": "2"}, ["line 8", "line 9 error"], ["line 10", "line 11", "line 12 error"]),
        ({"lineLimit": "2", "textIncludes": "error"}, ["line 6 error", "line 9 error"],
         ["line 12 error"]),
        ({"lineLimit": "1", "regexNotIncludes": "error$"}, ["line 8"], ["line 10", "line 11"]),
        ({"startTime": "2026-01-01T00:00:07Z"}, ["line 7", "line 8", "line 9 error"],
         ["line 10", "line 11", "line 12 error"]),
        ({"startTime": "2026-01-01T00:00:02Z", "lineLimit": "1000", "textIncludes": "error"},
         ["line 3 error", "line 6 error", "line 9 error"], ["line 12 error"]),
    ],
)  # fmt: skip
def test_websocket_tail_line_limit_then_live(
    client: TestClient,
    targets: dict[str, str],
    params: dict[str, str],
    first: list[str],
    live: list[str],
) -> None:
    path, build_id = seed_running(client, targets)
    with client.websocket_connect(tail_url(path, build_id, **params)) as ws:
        ws.send_json(init_message(client))
        assert ws.receive_json() == {"type": "init", "data": {"auth": "successful"}}
        assert tail_lines(ws, len(first)) == first
        # Every line written after the tail started follows, whatever the limit.
        append(client, build_id, 10, 3)
        assert tail_lines(ws, len(live)) == live
        client.delete(f"{path}/build/{build_id}")
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_websocket_tail_without_line_limit_sends_the_whole_log(
    client: TestClient, targets: dict[str, str]
) -> None:
    path, build_id = seed(client, targets)
    with client.websocket_connect(tail_url(path, build_id)) as ws:
        ws.send_json(init_message(client))
        ws.receive_json()
        assert len(tail_lines(ws, 10)) == 10


@pytest.mark.parametrize("params", [{"lineLimit": "0"}, {"lineLimit": "10001"},
                                    {"lineLimit": "x"}, {"startTime": "yesterday"}])  # fmt: skip
def test_websocket_tail_refuses_bad_bounds(
    client: TestClient, targets: dict[str, str], params: dict[str, str]
) -> None:
    path, build_id = seed(client, targets)
    with client.websocket_connect(tail_url(path, build_id, **params)) as ws:
        message = ws.receive_json()
        assert message["type"] == "error" and message["data"]["status"] == 400
        assert set(message["data"]["details"]) == set(params)


def test_stream_line_limit_and_start_time(client: TestClient, targets: dict[str, str]) -> None:
    path, build_id = seed(client, targets)

    def ids(**params: object) -> list[str | None]:
        got = client.get(f"{path}/build-logs/stream", params={"buildId": build_id, **params})
        assert got.status_code == 200, got.text
        return [e.get("id") for e in events(got.text)]

    assert ids(lineLimit=3) == ["7", "8", "9", None]
    assert ids(lineLimit=2, textIncludes="error") == ["6", "9", None]
    assert ids(startTime="2026-01-01T00:00:08Z") == ["8", "9", None]
    assert ids(lineLimit=5, after=7) == ["8", "9", None]  # resumed: only lines after the id
    assert ids(lineLimit=1, after=7) == ["9", None]
    assert_error(
        client.get(f"{path}/build-logs/stream", params={"buildId": build_id, "lineLimit": 0}),
        400,
        "lineLimit",
    )
