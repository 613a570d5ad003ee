"""What the sync and async clients share: request descriptions, answer decoding, error
mapping, pagination and log-stream bookkeeping. No I/O here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from shipyard import __version__
from shipyard.client._bodies import create_workload_body
from shipyard.client._exceptions import (
    ShipyardConnectionError,
    ShipyardError,
    ShipyardTimeoutError,
)
from shipyard.client._models import (
    Build,
    BuildRef,
    Entity,
    LogLine,
    Workload,
    workload_path,
)
from shipyard.client._sse import SSEDecoder

T = TypeVar("T")
Direction = Literal["forward", "backward"]
ServiceKind = Literal["combined", "build"]
JobKind = Literal["manual", "cron"]

USER_AGENT = f"shipyard-client/{__version__}"


def default_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def stream_timeout(timeout: float) -> httpx.Timeout:
    """A log stream is quiet while a build step runs: no read timeout there."""
    return httpx.Timeout(timeout, read=None)


@dataclass(frozen=True)
class Call:
    """One API request, before it is sent."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _seg(value: str) -> str:
    return quote(value, safe="")


def project_path(project_id: str) -> str:
    return f"/v1/projects/{_seg(project_id)}"


def build_path(ref: BuildRef) -> str:
    return f"{ref.workload_path}/build/{_seg(ref.build_id)}"


def resolve_ref(
    target: str | Build | BuildRef,
    build_id: str | None,
    service_id: str | None,
    job_id: str | None,
) -> BuildRef:
    """A build given as ``Build``/``BuildRef``, or as project id + keywords."""
    if isinstance(target, Build | BuildRef):
        if build_id is not None or service_id is not None or job_id is not None:
            raise TypeError("give a build, or a project id with build_id and service_id/job_id")
        return target.ref if isinstance(target, Build) else target
    if build_id is None:
        raise TypeError("build_id is required with a project id")
    return BuildRef(target, build_id, service_id, job_id)


# --- answers -----------------------------------------------------------------------------


def transport_error(exc: httpx.HTTPError) -> ShipyardConnectionError:
    try:
        where = f"{exc.request.method} {exc.request.url}: "
    except RuntimeError:  # no request attached
        where = ""
    error = ShipyardConnectionError(f"{where}{type(exc).__name__}: {exc}", exc)
    error.__cause__ = exc
    return error


def error_from(response: httpx.Response) -> ShipyardError:
    """The API's ``{"error": {status, message, details}}``, or the best description of an
    answer that does not have that shape (a proxy's page, …)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return ShipyardError(response.status_code, error["message"], error.get("details"))
    reason = response.reason_phrase or "error"
    return ShipyardError(response.status_code, f"HTTP {response.status_code} {reason}", body)


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The body of a 200 answer (``{"data": …, "pagination"?}``); raises otherwise."""
    if response.status_code != 200:
        raise error_from(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "data" not in body:
        raise ShipyardError(200, "the answer is not the API's {data: …} envelope", body)
    return body


def parse(make: Callable[[Any], T], data: Any) -> T:
    try:
        return make(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ShipyardError(200, f"unexpected object in the answer: {exc!r}", data) from exc


def build_parser(
    project_id: str, service_id: str | None, job_id: str | None
) -> Callable[[Any], Build]:
    return lambda data: Build.from_api(
        data, project_id=project_id, service_id=service_id, job_id=job_id
    )


def workload_parser(entity: Entity, project_id: str) -> Callable[[Any], Workload]:
    return lambda data: Workload.from_api(data, entity=entity, project_id=project_id)


# --- calls ---------------------------------------------------------------------------------


def create_workload_call(
    project_id: str,
    entity: Entity,
    kind: str,
    name: str,
    *,
    repo_url: str,
    branch: str | None,
    description: str | None,
    project_type: str,
    dockerfile_path: str,
    work_dir: str,
    build_arguments: Mapping[str, str] | None,
    path_ignore_rules: Sequence[str] | None,
    is_allow_list: bool,
    use_cache: bool,
    extra: Mapping[str, Any],
) -> Call:
    collection = "services" if entity == "service" else "jobs"
    body = create_workload_body(
        name,
        repo_url=repo_url,
        branch=branch,
        description=description,
        project_type=project_type,
        dockerfile_path=dockerfile_path,
        work_dir=work_dir,
        build_arguments=build_arguments,
        path_ignore_rules=path_ignore_rules,
        is_allow_list=is_allow_list,
        use_cache=use_cache,
        extra=extra,
    )
    return Call("POST", f"{project_path(project_id)}/{collection}/{_seg(kind)}", json=body)


def start_build_call(
    project_id: str,
    service_id: str | None,
    job_id: str | None,
    body: dict[str, Any],
    idempotency_key: str | None,
) -> Call:
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return Call(
        "POST", f"{workload_path(project_id, service_id, job_id)}/build", json=body, headers=headers
    )


def _timestamp(value: datetime) -> str:
    """Naive datetimes are taken as UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def logs_call(
    ref: BuildRef,
    *,
    start_time: datetime | None,
    end_time: datetime | None,
    line_limit: int,
    direction: Direction,
) -> Call:
    params: dict[str, Any] = {
        "queryType": "range",
        "buildId": ref.build_id,
        "lineLimit": line_limit,
        "direction": direction,
    }
    if start_time is not None:
        params["startTime"] = _timestamp(start_time)
    if end_time is not None:
        params["endTime"] = _timestamp(end_time)
    return Call("GET", f"{ref.workload_path}/build-logs", params=params)


def log_stream_call(ref: BuildRef) -> Call:
    return Call(
        "GET",
        f"{ref.workload_path}/build-logs/stream",
        params={"buildId": ref.build_id},
        headers={"Accept": "text/event-stream"},
    )


def log_lines(body: Mapping[str, Any]) -> list[LogLine]:
    data = body["data"]
    if not isinstance(data, list):
        raise ShipyardError(200, "build logs: expected a list of lines", data)
    return [parse(LogLine.from_api, line) for line in data]


# --- pagination ----------------------------------------------------------------------------


@dataclass
class Pager:
    """Follows ``pagination.cursor`` until ``hasNextPage`` is false (``page=`` if a server
    gives no cursor)."""

    path: str
    key: str
    per_page: int = 50
    _page: int = field(default=1, init=False)
    _cursors: set[str] = field(default_factory=set, init=False)

    def first(self) -> Call:
        return Call("GET", self.path, params={"per_page": self.per_page})

    def items(self, body: Mapping[str, Any]) -> list[Any]:
        data = body["data"]
        items = data.get(self.key) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ShipyardError(200, f"expected a list under data.{self.key}", data)
        return items

    def next(self, body: Mapping[str, Any], got: int) -> Call | None:
        """The call for the next page, or ``None`` after the last one."""
        pagination = body.get("pagination")
        if not isinstance(pagination, dict) or not pagination.get("hasNextPage") or not got:
            return None
        self._page += 1
        cursor = pagination.get("cursor")
        if not cursor:
            return Call("GET", self.path, params={"per_page": self.per_page, "page": self._page})
        if cursor in self._cursors:
            raise ShipyardError(200, "the server repeated a pagination cursor", pagination)
        self._cursors.add(cursor)
        return Call("GET", self.path, params={"per_page": self.per_page, "cursor": cursor})


def builds_pager(
    project_id: str, service_id: str | None, job_id: str | None, per_page: int
) -> Pager:
    return Pager(f"{workload_path(project_id, service_id, job_id)}/build", "builds", per_page)


# --- log stream and wait -------------------------------------------------------------------


class LogEvents:
    """Turns the lines of ``…/build-logs/stream`` into ``LogLine``s; ``ended`` after the
    ``end`` event."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.ended = False

    def feed(self, text: str) -> LogLine | None:
        event = self._decoder.decode(text)
        if event is None:
            return None
        if event.event == "end":
            self.ended = True
            return None
        if event.event == "error":
            raise ShipyardError(0, f"log stream error: {event.data}", event.data)
        if event.event != "message" or not event.data:
            return None
        try:
            data = json.loads(event.data)
        except ValueError as exc:
            raise ShipyardError(200, "log stream: an event is not JSON", event.data) from exc
        return parse(LogLine.from_api, data)

    @staticmethod
    def cut_short() -> ShipyardConnectionError:
        return ShipyardConnectionError("the log stream closed before its end event")


class Deadline:
    def __init__(self, timeout_s: float | None) -> None:
        self._end = None if timeout_s is None else time.monotonic() + timeout_s
        self._timeout_s = timeout_s

    def sleep_for(self, poll_s: float, build: Build) -> float:
        """How long to sleep before the next poll; raises once the deadline has passed."""
        if self._end is None:
            return poll_s
        left = self._end - time.monotonic()
        if left <= 0:
            raise ShipyardTimeoutError(
                f"build {build.id} still {build.status} after {self._timeout_s}s", build
            )
        return min(poll_s, left)
