"""Build logs: a range query over HTTP and a live tail over a websocket (the JS client's
protocol, CONTRACT.md "Log tail protocol") or server-sent events (curl, our CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from shipyard.api.auth import Principal, authenticate
from shipyard.api.deps import DB, AppState, Caller, State
from shipyard.api.guards import GuardedStream, Held, LogStreamSlot, log_stream_refusal, slots
from shipyard.api.pagination import MAX_DB_INT
from shipyard.api.routers.builds import build_out
from shipyard.api.schemas.common import envelope, iso_ms
from shipyard.api.tail_wakeups import TailWakeups
from shipyard.builds import permissions
from shipyard.builds.errors import (
    InvalidRequest,
    NotFound,
    ShipyardError,
    TooManyRequests,
    not_found_slug,
)
from shipyard.builds.log_filter import MAX_PATTERN_CHARS, LineFilter
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store import workloads as workload_store
from shipyard.store.models import Build, BuildLogLine

router = APIRouter(prefix="/v1/projects/{projectId}", tags=["logs"])

Entity = Literal["service", "job"]
MAX_LINES = 10_000  # lineLimit's upper bound
MAX_DURATION_S = 60 * 60 * 24 * 30  # a build log is never older than the rows that hold it
TAIL_POLL_S = 0.25  # SQLite: how often a tail re-reads
# PostgreSQL: a tail re-reads on NOTIFY; this slow re-read covers a listener that is
# (re)connecting and any notification lost with it.
TAIL_REREAD_S = 2.0
TAIL_BATCH = 500
KEEPALIVE_S = 15.0


def line_out(row: BuildLogLine) -> dict[str, Any]:
    return {
        "containerId": f"build-{row.build_id}-{row.attempt}",
        "log": row.line,
        "ts": iso_ms(row.ts),
    }


def _find_build(
    session: Session,
    caller: Principal,
    project_id: str,
    entity: Entity,
    slug: str,
    build_id: str | None,
) -> Build:
    caller.require(permissions.READ_LOGS[entity], project_id)
    workload = workload_store.get(session, project_id, entity, slug)
    if build_id:
        return build_store.get(session, workload.id, build_id)
    # Northflank: without buildId, the logs of the most recent build.
    latest = build_store.latest(session, workload.id)
    if latest is None:
        raise NotFound(f"{entity} '{slug}' has no builds yet", slug=not_found_slug("build"))
    return latest


def _range(
    session: Session,
    caller: Principal,
    project_id: str,
    entity: Entity,
    slug: str,
    build_id: str | None,
    start: datetime | None,
    end: datetime | None,
    duration: int | None,
    limit: int,
    direction: str,
    keep: LineFilter,
) -> dict[str, Any]:
    build = _find_build(session, caller, project_id, entity, slug, build_id)
    start, end = time_window(start, end, duration)
    backward = direction == "backward"
    if not keep.active:
        rows = log_store.in_range(
            session, build.id, start=start, end=end, limit=limit, backward=backward
        )
        return envelope([line_out(row) for row in rows])
    # A filter searches the whole log (batch by batch), not only its first lines.
    out: list[dict[str, Any]] = []
    for batch in log_store.scan(session, build.id, start=start, end=end, backward=backward):
        out.extend(line_out(row) for row in batch if keep(row.line))
        if len(out) >= limit:
            break
    return envelope(out[:limit])


def time_window(
    start: datetime | None, end: datetime | None, duration: int | None
) -> tuple[datetime | None, datetime | None]:
    """Northflank: ``duration`` (seconds) with at most one of ``startTime``/``endTime``;
    alone, it is the last ``duration`` seconds."""
    if duration is None:
        if start is not None and end is not None and end < start:
            raise InvalidRequest("endTime is before startTime", {"endTime": "before startTime"})
        return start, end
    if start is not None and end is not None:
        raise InvalidRequest(
            "duration may be combined with startTime or endTime, not both",
            {"duration": "conflicts with startTime and endTime"},
        )
    if start is not None:
        return start, start + timedelta(seconds=duration)
    end = end or datetime.now(UTC)
    return end - timedelta(seconds=duration), end


LineLimit = Annotated[int, Query(ge=1, le=MAX_LINES)]
Direction = Annotated[Literal["forward", "backward"], Query()]
Pattern = Annotated[str | None, Query(max_length=MAX_PATTERN_CHARS)]


def _range_endpoint(entity: Entity):  # type: ignore[no-untyped-def]
    def handler(
        projectId: str,
        entityId: str,
        session: DB,
        caller: Caller,
        buildId: str | None = None,
        runId: str | None = None,
        queryType: Literal["range", "tail"] = "range",
        startTime: datetime | None = None,
        endTime: datetime | None = None,
        duration: Annotated[int | None, Query(ge=1, le=MAX_DURATION_S)] = None,
        lineLimit: LineLimit = 1000,
        direction: Direction = "forward",
        textIncludes: str | None = None,
        textNotIncludes: str | None = None,
        regexIncludes: Pattern = None,
        regexNotIncludes: Pattern = None,
    ) -> dict[str, Any]:
        if queryType == "tail":
            raise InvalidRequest(
                "queryType=tail needs a websocket "
                "(or GET …/build-logs/stream for server-sent events)"
            )
        keep = LineFilter.parse(
            text_includes=textIncludes,
            text_not_includes=textNotIncludes,
            regex_includes=regexIncludes,
            regex_not_includes=regexNotIncludes,
        )
        return _range(
            session,
            caller,
            projectId,
            entity,
            entityId,
            buildId or runId,
            startTime,
            endTime,
            duration,
            lineLimit,
            direction,
            keep,
        )

    return handler


def _register_for_both(suffix: str, factory: Any, summary: str) -> None:
    for entity, segment in (("service", "services"), ("job", "jobs")):
        router.add_api_route(
            f"/{segment}/{{entityId}}/{suffix}",
            factory(entity),
            methods=["GET"],
            summary=summary.format(entity=entity),
            response_model=None,
        )


_register_for_both("build-logs", _range_endpoint, "Get {entity} build logs")


async def follow(
    sessions: sessionmaker[Session],
    build_id: str,
    after_seq: int = -1,
    keep: LineFilter | None = None,
    closing: threading.Event | None = None,
    wakeups: TailWakeups | None = None,
) -> AsyncIterator[list[BuildLogLine]]:
    """Yield batches of new lines (those ``keep`` passes) until the build has concluded and
    every line was yielded. An empty batch now and then during silence lets a transport send
    a keep-alive; lines filtered out do not count as traffic. ``closing`` (Shipyard is
    shutting down): the stream ends after the lines stored so far, so it never holds the
    exit. With ``wakeups`` (PostgreSQL) it re-reads when notified, else it polls."""

    def poll(seq: int) -> tuple[list[BuildLogLine], int, bool]:
        with sessions() as session:
            build = build_store.get_any(session, build_id)
            done = build is None or build.concluded
            # Read lines after the status: a line written before the conclusion is never missed.
            rows = log_store.after_seq(session, build_id, seq, TAIL_BATCH)
        last = rows[-1].seq if rows else seq
        # Filtered here, in the worker thread, so the event loop never runs a caller's pattern.
        if keep is not None and keep.active:
            rows = [row for row in rows if keep(row.line)]
        return rows, last, done

    seq = after_seq
    quiet_since = time.monotonic()
    with wakeups.watch(build_id) if wakeups is not None else nullcontext() as woken:
        while True:
            if woken is not None:
                woken.clear()  # before reading: a commit during the read wakes the next wait
            rows, last, done = await run_in_threadpool(poll, seq)
            if last != seq:
                seq = last
                if rows:
                    quiet_since = time.monotonic()
                    yield rows
                continue
            if done or (closing is not None and closing.is_set()):
                return
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield []
            if woken is None:
                await asyncio.sleep(TAIL_POLL_S)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), TAIL_REREAD_S)


def backlog(
    sessions: sessionmaker[Session],
    build_id: str,
    after_seq: int,
    keep: LineFilter,
    limit: int | None,
    start: datetime | None,
) -> tuple[list[BuildLogLine], int]:
    """What a live tail sends first (Northflank: the most recent ``lineLimit`` lines, from
    ``startTime`` on, then every new line live): of the lines written so far after
    ``after_seq``, the last ``limit`` that pass ``keep`` (all of them without a limit); and the
    sequence number the live part follows after."""
    with sessions() as session:
        end_seq = log_store.next_seq(session, build_id) - 1
        picked: list[BuildLogLine] = []
        for batch in log_store.scan(session, build_id, start=start, end=None, backward=True):
            for row in batch:
                if row.seq > end_seq:
                    continue
                if row.seq <= after_seq or (limit is not None and len(picked) >= limit):
                    return picked[::-1], max(end_seq, after_seq)
                if keep(row.line):
                    picked.append(row)
    return picked[::-1], max(end_seq, after_seq)


def _tail_bounds(params: Mapping[str, str]) -> tuple[int | None, datetime | None]:
    """``lineLimit`` and ``startTime`` of a tail, checked as the range query checks them."""
    limit: int | None = None
    start: datetime | None = None
    raw = params.get("lineLimit")
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LINES:
            raise InvalidRequest(
                f"lineLimit must be an integer from 1 to {MAX_LINES}", {"lineLimit": "invalid"}
            )
    raw = params.get("startTime")
    if raw is not None:
        try:
            start = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(
                "startTime must be an ISO 8601 timestamp", {"startTime": "invalid"}
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    return limit, start


def _filter_of(params: Mapping[str, str]) -> LineFilter:
    return LineFilter.parse(
        text_includes=params.get("textIncludes"),
        text_not_includes=params.get("textNotIncludes"),
        regex_includes=params.get("regexIncludes"),
        regex_not_includes=params.get("regexNotIncludes"),
    )


class _BinaryFrame(Exception):
    """The client sent a binary frame where the protocol has only JSON text."""


async def _receive_json(websocket: WebSocket) -> Any:
    # Not receive_text(): on a binary frame it fails with a KeyError deep in Starlette and the
    # server logged a traceback; the raw message says which kind of frame arrived.
    message = await asyncio.wait_for(websocket.receive(), timeout=30)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(int(message.get("code", 1000)))
    text = message.get("text")
    if text is None:
        raise _BinaryFrame()
    return json.loads(text)


async def _send_error(websocket: WebSocket, code: int, data: dict[str, Any]) -> None:
    await websocket.send_json({"type": "error", "data": data})
    await websocket.close(code=code)


async def _tail_socket(
    websocket: WebSocket, entity: Entity, project_id: str, slug: str, held: Held
) -> None:
    state: AppState = websocket.app.state.shipyard
    await websocket.accept()
    try:
        try:
            keep = _filter_of(websocket.query_params)
            limit, start = _tail_bounds(websocket.query_params)
        except InvalidRequest as exc:
            # The HTTP error body, as a message: a 400 is impossible once the socket is open.
            await _send_error(
                websocket, 4000, {"status": 400, "message": exc.message, "details": exc.details}
            )
            return
        init = await _receive_json(websocket)
        token = init.get("data", {}).get("auth", {}).get("apiToken")
        build_id = websocket.query_params.get("buildId") or websocket.query_params.get("runId")

        def check() -> str:
            with state.sessions() as session:
                caller = authenticate(
                    session, token if isinstance(token, str) else None, state.admin_token
                )
                return _find_build(session, caller, project_id, entity, slug, build_id).id

        try:
            found = await run_in_threadpool(check)
        except ShipyardError as exc:
            await websocket.send_json(
                {"type": "init", "data": {"auth": "failed", "message": exc.message}}
            )
            await websocket.close(code=4001)
            return
        cap = state.settings.max_log_streams_per_project
        try:  # after the auth: an anonymous socket never holds a project's slot
            held.take(cap, log_stream_refusal(project_id, cap))
        except TooManyRequests as exc:
            await _send_error(websocket, 4029, {"status": 429, "message": exc.message})
            return
        await websocket.send_json({"type": "init", "data": {"auth": "successful"}})
        after = -1
        if limit is not None or start is not None:
            first, after = await run_in_threadpool(
                backlog, state.sessions, found, -1, keep, limit, start
            )
            if first:
                await websocket.send_json(
                    {"type": "log-lines", "data": [line_out(r) for r in first]}
                )
        async for rows in follow(state.sessions, found, after, keep, state.closing, state.wakeups):
            if not rows:
                continue
            await websocket.send_json({"type": "log-lines", "data": [line_out(r) for r in rows]})
        await websocket.close()
    except (TimeoutError, WebSocketDisconnect):
        return
    except _BinaryFrame:
        # 1003: "received a type of data it cannot accept" (RFC 6455 7.4.1).
        await _send_error(
            websocket, 1003, {"message": "expected a text frame with the init message (JSON)"}
        )
    except (ValueError, AttributeError):
        await _send_error(websocket, 4000, {"message": "expected an init message"})


@router.websocket("/services/{serviceId}/build-logs")
async def tail_service_build_logs(websocket: WebSocket, projectId: str, serviceId: str) -> None:
    held = Held(slots(websocket.app, "log_streams"), projectId)
    try:
        await _tail_socket(websocket, "service", projectId, serviceId, held)
    finally:
        held.release()


@router.websocket("/jobs/{jobId}/build-logs")
async def tail_job_build_logs(websocket: WebSocket, projectId: str, jobId: str) -> None:
    held = Held(slots(websocket.app, "log_streams"), projectId)
    try:
        await _tail_socket(websocket, "job", projectId, jobId, held)
    finally:
        held.release()


def _event_id(value: str | None) -> int:
    try:
        seq = int(value) if value is not None else -1
        if not -1 <= seq <= MAX_DB_INT:
            raise ValueError(value)
        return seq
    except ValueError:
        raise InvalidRequest(
            "Last-Event-ID must be a line id", {"Last-Event-ID": "invalid"}
        ) from None


def _stream_endpoint(entity: Entity):  # type: ignore[no-untyped-def]
    def handler(
        projectId: str,
        entityId: str,
        state: State,
        session: DB,
        caller: Caller,
        stream_slot: LogStreamSlot,
        buildId: str | None = None,
        after: Annotated[
            int | None, Query(ge=-1, le=MAX_DB_INT, description="Resume after this line id")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        lineLimit: Annotated[int | None, Query(ge=1, le=MAX_LINES)] = None,
        startTime: datetime | None = None,
        textIncludes: str | None = None,
        textNotIncludes: str | None = None,
        regexIncludes: Pattern = None,
        regexNotIncludes: Pattern = None,
    ) -> StreamingResponse:
        """Each line is an event whose ``id`` is its sequence number (a reconnect with
        ``Last-Event-ID`` resumes after it); ``: ping`` comments keep quiet streams open; the
        final ``end`` event carries the concluded build. ``lineLimit``/``startTime`` bound the
        lines already written (the most recent ``lineLimit`` of them, from ``startTime`` on);
        every later line follows."""
        keep = LineFilter.parse(
            text_includes=textIncludes,
            text_not_includes=textNotIncludes,
            regex_includes=regexIncludes,
            regex_not_includes=regexNotIncludes,
        )
        build = _find_build(session, caller, projectId, entity, entityId, buildId)
        start = after if after is not None else _event_id(last_event_id)
        # The stream outlives this handler: give the connection back now (SQLite has one).
        session.close()

        def final() -> dict[str, Any]:
            with state.sessions() as s:
                row = build_store.get_any(s, build.id)
                return build_out(row) if row is not None else {}

        async def events() -> AsyncIterator[str]:
            after = start
            if lineLimit is not None or startTime is not None:
                first, after = await run_in_threadpool(
                    backlog, state.sessions, build.id, start, keep, lineLimit, startTime
                )
                for row in first:
                    yield f"id: {row.seq}\ndata: {json.dumps(line_out(row))}\n\n"
            async for rows in follow(
                state.sessions, build.id, after, keep, state.closing, state.wakeups
            ):
                if not rows:
                    yield ": ping\n\n"
                for row in rows:
                    yield f"id: {row.seq}\ndata: {json.dumps(line_out(row))}\n\n"
            concluded = await run_in_threadpool(final)
            yield f"event: end\ndata: {json.dumps(concluded)}\n\n"

        return GuardedStream(stream_slot, events(), media_type="text/event-stream")

    return handler


_register_for_both(
    "build-logs/stream", _stream_endpoint, "Follow {entity} build logs (server-sent events)"
)
