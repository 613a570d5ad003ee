"""The asynchronous client: the surface of :class:`Shipyard`, awaitable; ``list_*`` and
``follow_logs`` are async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote

import httpx

from shipyard.client._base import (
    Call,
    Deadline,
    Direction,
    JobKind,
    LogEvents,
    Pager,
    ServiceKind,
    build_parser,
    build_path,
    builds_pager,
    create_workload_call,
    default_headers,
    envelope,
    error_from,
    log_lines,
    log_stream_call,
    logs_call,
    parse,
    project_path,
    resolve_ref,
    start_build_call,
    stream_timeout,
    transport_error,
    workload_parser,
)
from shipyard.client._bodies import Content, overrides_body, start_build_body
from shipyard.client._models import Build, BuildRef, LogLine, Project, Workload, workload_path

__all__ = ["AsyncShipyard"]

T = TypeVar("T")


class AsyncShipyard:
    """A Shipyard (or Northflank v1 build API) client. Every method raises
    :class:`ShipyardError` on an error answer, :class:`ShipyardConnectionError` when the
    server cannot be reached; ``list_*`` iterate lazily over every page."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=default_headers(token),
            timeout=timeout,
            transport=transport,
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncShipyard:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- projects ----------------------------------------------------------------------

    async def create_project(
        self, name: str, description: str | None = None, **extra: Any
    ) -> Project:
        body = {"name": name, **({} if description is None else {"description": description})}
        call = Call("POST", "/v1/projects", json={**body, **extra})
        return parse(Project.from_api, await self._data(call))

    async def get_project(self, project_id: str) -> Project:
        return parse(Project.from_api, await self._data(Call("GET", project_path(project_id))))

    def list_projects(self, *, per_page: int = 50) -> AsyncIterator[Project]:
        return self._paginate(Pager("/v1/projects", "projects", per_page), Project.from_api)

    async def registry_credentials(self, project_id: str) -> dict[str, Any]:
        """Pull credentials for the project's images in the embedded registry:
        ``registry``, ``username``, ``password``, ``expiresAt``."""
        data: dict[str, Any] = await self._data(
            Call("GET", f"{project_path(project_id)}/registry-credentials")
        )
        return data

    # --- Webhooks (docs/webhooks.md) -------------------------------------------------------

    def list_webhook_deliveries(
        self, project_id: str, *, per_page: int = 50
    ) -> AsyncIterator[dict[str, Any]]:
        """The project's inbound webhook deliveries, newest first, each with what it did
        per service or job (``results``: ``started <build id>`` / ``skipped: <reason>``)."""
        path = f"{project_path(project_id)}/webhook/deliveries"
        return self._paginate(Pager(path, "deliveries", per_page), _as_dict)

    async def webhook(self, project_id: str) -> dict[str, Any]:
        """Whether the project has a webhook secret, and its URLs per provider."""
        data: dict[str, Any] = await self._data(Call("GET", f"{project_path(project_id)}/webhook"))
        return data

    async def rotate_webhook_secret(self, project_id: str) -> dict[str, Any]:
        """A new webhook secret (``secret``: shown this once) and the URLs per provider."""
        data: dict[str, Any] = await self._data(Call("POST", f"{project_path(project_id)}/webhook"))
        return data

    # --- API tokens (the admin token only) ------------------------------------------------

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every API token: ``id``, ``name``, ``projectId``, ``permissions``, ``createdAt``
        (never the token or its hash)."""
        data: dict[str, Any] = await self._data(Call("GET", "/v1/tokens"))
        return list(data["tokens"])

    async def revoke_token(self, token_id: int) -> None:
        """The token stops working at once; an unknown id answers 404."""
        await self._data(Call("DELETE", f"/v1/tokens/{int(token_id)}"))

    # --- workers (the admin token only) --------------------------------------------------

    async def list_workers(self) -> list[dict[str, Any]]:
        """The processes that run builds: ``id``, ``hostname``, ``pid``, ``startedAt``,
        ``lastHeartbeatAt``, ``heartbeatAgeS``, ``alive``, ``concurrency``, ``running`` and
        ``builds`` (the ids it holds now)."""
        data: dict[str, Any] = await self._data(Call("GET", "/v1/workers"))
        return list(data["workers"])

    # --- services and jobs -------------------------------------------------------------

    async def create_service(
        self,
        project_id: str,
        name: str,
        *,
        kind: ServiceKind,
        repo_url: str,
        branch: str | None = None,
        description: str | None = None,
        project_type: str = "self-hosted",
        dockerfile_path: str = "/Dockerfile",
        work_dir: str = "/",
        build_arguments: Mapping[str, str] | None = None,
        path_ignore_rules: Sequence[str] | None = None,
        is_allow_list: bool = False,
        use_cache: bool = True,
        **extra: Any,
    ) -> Workload:
        """A ``combined`` service (needs ``branch``) or a ``build`` service; ``extra`` adds
        top-level fields of the create body (stored by the server)."""
        call = create_workload_call(
            project_id,
            "service",
            kind,
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
        return parse(workload_parser("service", project_id), await self._data(call))

    async def create_job(
        self,
        project_id: str,
        name: str,
        *,
        repo_url: str,
        branch: str,
        kind: JobKind = "manual",
        description: str | None = None,
        project_type: str = "self-hosted",
        dockerfile_path: str = "/Dockerfile",
        work_dir: str = "/",
        build_arguments: Mapping[str, str] | None = None,
        path_ignore_rules: Sequence[str] | None = None,
        is_allow_list: bool = False,
        use_cache: bool = True,
        **extra: Any,
    ) -> Workload:
        """A ``manual`` or ``cron`` job; ``extra`` adds top-level fields (e.g. a schedule)."""
        call = create_workload_call(
            project_id,
            "job",
            kind,
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
        return parse(workload_parser("job", project_id), await self._data(call))

    async def get_service(self, project_id: str, service_id: str) -> Workload:
        call = Call("GET", workload_path(project_id, service_id, None))
        return parse(workload_parser("service", project_id), await self._data(call))

    async def get_job(self, project_id: str, job_id: str) -> Workload:
        call = Call("GET", workload_path(project_id, None, job_id))
        return parse(workload_parser("job", project_id), await self._data(call))

    def list_services(self, project_id: str, *, per_page: int = 50) -> AsyncIterator[Workload]:
        pager = Pager(f"{project_path(project_id)}/services", "services", per_page)
        return self._paginate(pager, workload_parser("service", project_id))

    def list_jobs(self, project_id: str, *, per_page: int = 50) -> AsyncIterator[Workload]:
        pager = Pager(f"{project_path(project_id)}/jobs", "jobs", per_page)
        return self._paginate(pager, workload_parser("job", project_id))

    # --- builds --------------------------------------------------------------------------

    async def start_service_build(
        self,
        project_id: str,
        service_id: str,
        *,
        sha: str | None = None,
        branch: str | None = None,
        pull_request_id: int | None = None,
        bundle_url: str | None = None,
        upload_id: str | None = None,
        build_arguments: Mapping[str, str] | None = None,
        build_files: Mapping[str, Content] | None = None,
        secret_mounts: Mapping[str, Content] | None = None,
        dockerfile_path: str | None = None,
        work_dir: str | None = None,
        target: str | None = None,
        idempotency_key: str | None = None,
    ) -> Build:
        """Start a build of a git commit (``sha``/``branch``/``pull_request_id``; none: the
        service's most recent relevant commit) or of ``bundle_url``, or of
        an uploaded context (``upload_id``, from ``upload_context``). File contents given as
        ``bytes`` are sent base64-encoded, ``str`` as utf-8 text. A repeated call with the
        same ``idempotency_key`` and arguments returns the first build."""
        overrides = overrides_body(
            build_arguments=build_arguments,
            build_files=build_files,
            secret_mounts=secret_mounts,
            dockerfile_path=dockerfile_path,
            work_dir=work_dir,
            target=target,
        )
        body = start_build_body(
            sha=sha,
            branch=branch,
            pull_request_id=pull_request_id,
            bundle_url=bundle_url,
            overrides=overrides,
            upload_id=upload_id,
        )
        call = start_build_call(project_id, service_id, None, body, idempotency_key)
        return parse(build_parser(project_id, service_id, None), await self._data(call))

    async def start_job_build(
        self,
        project_id: str,
        job_id: str,
        *,
        sha: str | None = None,
        build_arguments: Mapping[str, str] | None = None,
        build_files: Mapping[str, Content] | None = None,
        secret_mounts: Mapping[str, Content] | None = None,
        dockerfile_path: str | None = None,
        work_dir: str | None = None,
        target: str | None = None,
        idempotency_key: str | None = None,
    ) -> Build:
        """Start a build of ``sha`` (default: the tip of the job's branch)."""
        overrides = overrides_body(
            build_arguments=build_arguments,
            build_files=build_files,
            secret_mounts=secret_mounts,
            dockerfile_path=dockerfile_path,
            work_dir=work_dir,
            target=target,
        )
        body = start_build_body(sha=sha, overrides=overrides)
        call = start_build_call(project_id, None, job_id, body, idempotency_key)
        return parse(build_parser(project_id, None, job_id), await self._data(call))

    def list_builds(
        self,
        project_id: str,
        service_id: str | None = None,
        job_id: str | None = None,
        per_page: int = 50,
    ) -> AsyncIterator[Build]:
        """Every build of the service or job (exactly one of them), newest first."""
        pager = builds_pager(project_id, service_id, job_id, per_page)
        return self._paginate(pager, build_parser(project_id, service_id, job_id))

    @overload
    async def get_build(self, build: Build | BuildRef, /) -> Build: ...
    @overload
    async def get_build(
        self,
        project_id: str,
        /,
        *,
        build_id: str,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> Build: ...
    async def get_build(
        self,
        target: str | Build | BuildRef,
        /,
        *,
        build_id: str | None = None,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> Build:
        ref = resolve_ref(target, build_id, service_id, job_id)
        data = await self._data(Call("GET", build_path(ref)))
        return parse(build_parser(ref.project_id, ref.service_id, ref.job_id), data)

    @overload
    async def abort_build(self, build: Build | BuildRef, /) -> Build: ...
    @overload
    async def abort_build(
        self,
        project_id: str,
        /,
        *,
        build_id: str,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> Build: ...
    async def abort_build(
        self,
        target: str | Build | BuildRef,
        /,
        *,
        build_id: str | None = None,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> Build:
        """Ends a running build as ``ABORTED``; a concluded build answers 409."""
        ref = resolve_ref(target, build_id, service_id, job_id)
        data = await self._data(Call("DELETE", build_path(ref)))
        return parse(build_parser(ref.project_id, ref.service_id, ref.job_id), data)

    async def wait(
        self, build: Build | BuildRef, *, poll_s: float = 1.0, timeout_s: float | None = None
    ) -> Build:
        """Poll until the build has concluded and return it; raises
        :class:`ShipyardTimeoutError` after ``timeout_s``."""
        ref = build.ref if isinstance(build, Build) else build
        deadline = Deadline(timeout_s)
        current = await self.get_build(ref)
        while not current.concluded:
            await asyncio.sleep(deadline.sleep_for(poll_s, current))
            current = await self.get_build(ref)
        return current

    # --- logs ----------------------------------------------------------------------------

    @overload
    async def build_logs(
        self,
        build: Build | BuildRef,
        /,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        line_limit: int = 1000,
        direction: Direction = "forward",
    ) -> list[LogLine]: ...
    @overload
    async def build_logs(
        self,
        project_id: str,
        /,
        *,
        build_id: str,
        service_id: str | None = None,
        job_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        line_limit: int = 1000,
        direction: Direction = "forward",
    ) -> list[LogLine]: ...
    async def build_logs(
        self,
        target: str | Build | BuildRef,
        /,
        *,
        build_id: str | None = None,
        service_id: str | None = None,
        job_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        line_limit: int = 1000,
        direction: Direction = "forward",
    ) -> list[LogLine]:
        """Up to ``line_limit`` lines logged so far (``backward``: the last ones, newest
        first). Naive datetimes are taken as UTC."""
        ref = resolve_ref(target, build_id, service_id, job_id)
        call = logs_call(
            ref,
            start_time=start_time,
            end_time=end_time,
            line_limit=line_limit,
            direction=direction,
        )
        return log_lines(await self._send(call))

    @overload
    def follow_logs(self, build: Build | BuildRef, /) -> AsyncIterator[LogLine]: ...
    @overload
    def follow_logs(
        self,
        project_id: str,
        /,
        *,
        build_id: str,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> AsyncIterator[LogLine]: ...
    def follow_logs(
        self,
        target: str | Build | BuildRef,
        /,
        *,
        build_id: str | None = None,
        service_id: str | None = None,
        job_id: str | None = None,
    ) -> AsyncIterator[LogLine]:
        """Every line from the first, live, until the build has concluded (server-sent
        events). Raises :class:`ShipyardConnectionError` if the stream breaks before its
        end."""
        return self._follow(resolve_ref(target, build_id, service_id, job_id))

    # --- transport -----------------------------------------------------------------------

    async def upload_context(
        self, project_id: str, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> dict[str, Any]:
        """``Shipyard.upload_context``: stream a tar(.gz) build context; returns its
        ``{id, size, digest, createdAt, expiresAt}`` for ``start_service_build(upload_id=…)``."""
        try:
            response = await self._http.post(
                f"/v1/projects/{quote(project_id, safe='')}/uploads",
                content=chunks,
                headers={"Content-Type": "application/gzip"},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        data: dict[str, Any] = envelope(response)["data"]
        return data

    async def _send(self, call: Call) -> dict[str, Any]:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=call.headers
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        return envelope(response)

    async def _data(self, call: Call) -> Any:
        return (await self._send(call))["data"]

    async def _paginate(self, pager: Pager, make: Callable[[Any], T]) -> AsyncIterator[T]:
        call: Call | None = pager.first()
        while call is not None:
            body = await self._send(call)
            items = pager.items(body)
            for item in items:
                yield parse(make, item)
            call = pager.next(body, len(items))

    async def _follow(self, ref: BuildRef) -> AsyncIterator[LogLine]:
        call = log_stream_call(ref)
        events = LogEvents()
        try:
            async with self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=call.headers,
                timeout=stream_timeout(self._timeout),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise error_from(response)
                async for text in response.aiter_lines():
                    line = events.feed(text)
                    if line is not None:
                        yield line
                    if events.ended:
                        return
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        raise events.cut_short()


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value)
