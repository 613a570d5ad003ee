"""``shipyard start|get|list|abort service|job build`` and ``shipyard logs build``."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.text import Text

from shipyard.cli import config
from shipyard.cli.follow import follow
from shipyard.cli.options import (
    OutputOpt,
    Project,
    Token,
    Url,
    file_contents,
    json_input,
    key_values,
)
from shipyard.cli.output import (
    Output,
    emit_json,
    show_build,
    show_builds,
    show_line,
    status_text,
    stderr,
)
from shipyard.cli.safe import text
from shipyard.client import Build, BuildRef, Shipyard, ShipyardError
from shipyard.client._bodies import Content

start_app = typer.Typer(help="Start builds.", no_args_is_help=True)
get_app = typer.Typer(help="Show one build.", no_args_is_help=True)
list_app = typer.Typer(help="List builds.", no_args_is_help=True)
abort_app = typer.Typer(help="Abort a build.", no_args_is_help=True)
logs_app = typer.Typer(help="Build logs.", no_args_is_help=True)


def _pair(parent: typer.Typer, name: str) -> typer.Typer:
    child = typer.Typer(help=f"{parent.info.help} ({name}s)", no_args_is_help=True)
    parent.add_typer(child, name=name)
    return child


start_service, start_job = _pair(start_app, "service"), _pair(start_app, "job")
get_service, get_job = _pair(get_app, "service"), _pair(get_app, "job")
list_service, list_job = _pair(list_app, "service"), _pair(list_app, "job")
abort_service, abort_job = _pair(abort_app, "service"), _pair(abort_app, "job")

Service = Annotated[str, typer.Option("--service", "--serviceId", "-s", help="Service id")]
Job = Annotated[str, typer.Option("--job", "--jobId", "-j", help="Job id")]
BuildId = Annotated[str, typer.Option("--build", "--buildId", "-b", help="Build id")]
Sha = Annotated[str | None, typer.Option("--sha", help="Commit sha (40 hex)")]
BuildArg = Annotated[list[str] | None, typer.Option("--build-arg", help="KEY=VALUE, repeatable")]
BuildFile = Annotated[
    list[str] | None,
    typer.Option(
        "--build-file",
        help="/path/from/repo/root=@local-file (or =text), repeatable; ${BUILD_ARG} templated",
    ),
]
SecretMount = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-mount", help="id=@local-file (or =text), repeatable; ${BUILD_ARG} templated"
    ),
]
Dockerfile = Annotated[
    str | None,
    typer.Option("--dockerfile", help="Dockerfile path in the repo, e.g. /docker/Dockerfile"),
]
WorkDir = Annotated[
    str | None, typer.Option("--workdir", help="Build context dir in the repo, e.g. /app")
]
Target = Annotated[str | None, typer.Option("--target", help="Dockerfile stage to build")]
Input = Annotated[
    str | None, typer.Option("--input", help="The request body as JSON (flags override it)")
]
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Stream logs until the build ends; exit 0 only on SUCCESS"),
]
IdempotencyKey = Annotated[str | None, typer.Option("--idempotency-key", help="Repeat-safe start")]


@contextmanager
def client(url: str | None, token: str | None) -> Iterator[Shipyard]:
    cfg = config.resolve(url, token)
    if not cfg.token:
        stderr.print("[red]No token:[/] pass --token, set SHIPYARD_TOKEN or run `shipyard login`.")
        raise typer.Exit(2)
    try:
        with Shipyard(cfg.url, cfg.token) as sy:
            yield sy
    except ShipyardError as exc:
        where = f"HTTP {exc.status}" if exc.status else "connection"
        stderr.print(Text.assemble((f"Error ({where}): ", "red"), text(exc.message)))
        if exc.details and exc.status:
            stderr.print(text(exc.details, "dim"))
        raise typer.Exit(1) from None


def _decode(entry: Any) -> Content:
    """An ``--input`` entry: the documented ``{data, encoding}`` is sent as given (the server
    checks ``data`` is base64); a bare string is the file's text."""
    if isinstance(entry, dict):
        return {str(k): str(v) for k, v in entry.items()}
    return str(entry)


def _overrides(
    body: dict[str, Any],
    build_arg: list[str] | None,
    build_file: list[str] | None,
    secret_mount: list[str] | None,
    dockerfile: str | None,
    workdir: str | None,
    target: str | None,
) -> dict[str, Any]:
    given = body.get("overrides") or {}
    docker = given.get("docker") or {}
    return {
        "build_arguments": {
            **(given.get("buildArguments") or {}),
            **key_values(build_arg, "--build-arg"),
        }
        or None,
        "build_files": {
            **{k: _decode(v) for k, v in (given.get("buildFiles") or {}).items()},
            **file_contents(build_file, "--build-file"),
        }
        or None,
        "secret_mounts": {
            **{k: _decode(v) for k, v in (given.get("dockerSecretMounts") or {}).items()},
            **file_contents(secret_mount, "--secret-mount"),
        }
        or None,
        "dockerfile_path": dockerfile or docker.get("dockerFilePath"),
        "work_dir": workdir or docker.get("dockerWorkDir"),
        "target": target or docker.get("dockerfileTarget"),
    }


def _owner_flags(build: Build) -> str:
    owner = (
        f"-j {shlex.quote(build.job_id)}"
        if build.job_id
        else f"-s {shlex.quote(build.service_id or '')}"
    )
    return f"-p {shlex.quote(build.project_id or '')} {owner} -b {shlex.quote(build.id)}"


def abort_command(build: Build) -> str:
    return f"shipyard abort {'job' if build.job_id else 'service'} build {_owner_flags(build)}"


def follow_command(build: Build) -> str:
    return f"shipyard logs build {_owner_flags(build)} --follow"


def finish(
    sy: Shipyard, build: Build, output: Output, do_follow: bool, started: bool = True
) -> None:
    if not do_follow:
        show_build(build, output)
        return
    # The id first, on stderr (stdout stays the log): whatever happens next, it is known.
    stderr.print(
        Text.assemble(("build ", "bold"), text(build.id, "bold"), " ", status_text(build.status))
    )
    try:
        final = follow(sy, build, output)
    except KeyboardInterrupt:
        stderr.print(
            Text.assemble(
                "detached — the build goes on; abort with ", text(abort_command(build), "bold")
            )
        )
        raise typer.Exit(130) from None
    except ShipyardError as exc:
        where = f"HTTP {exc.status}" if exc.status else "connection"
        what = (
            f"build {build.id} was started, but following it failed"
            if started
            else (f"following build {build.id} failed")
        )
        stderr.print(Text.assemble((f"{what} ({where}): ", "red"), text(exc.message)))
        stderr.print(Text.assemble("follow it with ", text(follow_command(build), "bold")))
        raise typer.Exit(1) from None
    if output is Output.JSON:
        emit_json(dict(final.raw), line=True)
    else:
        stderr.print(
            Text.assemble(
                text(f"{final.id}: "),
                status_text(final.status),
                text(f" — {final.message}" if final.message else ""),
            )
        )
        if final.registry_uri:
            stderr.print(Text.assemble("image: ", text(final.registry_uri, "bold")))
    raise typer.Exit(0 if final.status == "SUCCESS" else 1)


@start_service.command("build")
def start_service_build(
    project: Project,
    service: Service,
    sha: Sha = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Branch (build services)")] = None,
    pull_request: Annotated[
        int | None,
        typer.Option("--pull-request", "--pr", help="Pull request number (build services)"),
    ] = None,
    bundle_url: Annotated[
        str | None, typer.Option("--bundle-url", help="Build a .tar/.tar.gz/.zip from this URL")
    ] = None,
    build_arg: BuildArg = None,
    build_file: BuildFile = None,
    secret_mount: SecretMount = None,
    dockerfile: Dockerfile = None,
    workdir: WorkDir = None,
    target: Target = None,
    input: Input = None,
    do_follow: Follow = False,
    idempotency_key: IdempotencyKey = None,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Start a build of a service: `shipyard start service build --project P --service S …`."""
    body = json_input(input)
    with client(url, token) as sy:
        build = sy.start_service_build(
            project, service,
            sha=sha or body.get("sha"),
            branch=branch or body.get("branch"),
            pull_request_id=pull_request if pull_request is not None else body.get("pullRequestId"),
            bundle_url=bundle_url or body.get("bundleUrl"),
            idempotency_key=idempotency_key,
            **_overrides(body, build_arg, build_file, secret_mount, dockerfile, workdir, target),
        )  # fmt: skip
        finish(sy, build, output, do_follow)


@start_job.command("build")
def start_job_build(
    project: Project,
    job: Job,
    sha: Sha = None,
    build_arg: BuildArg = None,
    build_file: BuildFile = None,
    secret_mount: SecretMount = None,
    dockerfile: Dockerfile = None,
    workdir: WorkDir = None,
    target: Target = None,
    input: Input = None,
    do_follow: Follow = False,
    idempotency_key: IdempotencyKey = None,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Start a build of a job: `shipyard start job build --project P --job J …`."""
    body = json_input(input)
    with client(url, token) as sy:
        build = sy.start_job_build(
            project, job, sha=sha or body.get("sha"), idempotency_key=idempotency_key,
            **_overrides(body, build_arg, build_file, secret_mount, dockerfile, workdir, target),
        )  # fmt: skip
        finish(sy, build, output, do_follow)


def _ref(project: str, build: str, service: str | None, job: str | None) -> BuildRef:
    if (service is None) == (job is None):
        raise typer.BadParameter("give exactly one of --service or --job")
    return BuildRef(project_id=project, build_id=build, service_id=service, job_id=job)


def _show_one(
    ref: BuildRef, output: Output, url: str | None, token: str | None, abort: bool
) -> None:
    with client(url, token) as sy:
        show_build(sy.abort_build(ref) if abort else sy.get_build(ref), output)


def _show_list(
    project: str,
    service: str | None,
    job: str | None,
    limit: int,
    output: Output,
    url: str | None,
    token: str | None,
) -> None:
    with client(url, token) as sy:
        builds = []
        for b in sy.list_builds(project, service_id=service, job_id=job, per_page=min(limit, 100)):
            builds.append(b)
            if len(builds) >= limit:
                break
        show_builds(builds, output)


Limit = Annotated[int, typer.Option("--limit", help="At most this many, newest first")]


@get_service.command("build")
def get_service_build(
    project: Project,
    service: Service,
    build: BuildId,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show one build of a service."""
    _show_one(_ref(project, build, service, None), output, url, token, abort=False)


@get_job.command("build")
def get_job_build(
    project: Project,
    job: Job,
    build: BuildId,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show one build of a job."""
    _show_one(_ref(project, build, None, job), output, url, token, abort=False)


@list_service.command("builds")
def list_service_builds(
    project: Project,
    service: Service,
    limit: Limit = 20,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """List a service's builds, newest first."""
    _show_list(project, service, None, limit, output, url, token)


@list_job.command("builds")
def list_job_builds(
    project: Project,
    job: Job,
    limit: Limit = 20,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """List a job's builds, newest first."""
    _show_list(project, None, job, limit, output, url, token)


@abort_service.command("build")
def abort_service_build(
    project: Project,
    service: Service,
    build: BuildId,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Abort a service build (a queued one ends at once, a running one within seconds)."""
    _show_one(_ref(project, build, service, None), output, url, token, abort=True)


@abort_job.command("build")
def abort_job_build(
    project: Project,
    job: Job,
    build: BuildId,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Abort a job build."""
    _show_one(_ref(project, build, None, job), output, url, token, abort=True)


OptService = Annotated[
    str | None, typer.Option("--service", "--serviceId", "-s", help="Service id")
]
OptJob = Annotated[str | None, typer.Option("--job", "--jobId", "-j", help="Job id")]


@logs_app.command("build")
def build_logs(
    project: Project,
    build: BuildId,
    service: OptService = None,
    job: OptJob = None,
    do_follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the build ends")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", help="Lines to show (without --follow)")
    ] = 1000,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Print a build's log; with --follow, stream it live (exit 0 only on SUCCESS)."""
    ref = _ref(project, build, service, job)
    with client(url, token) as sy:
        if do_follow:
            finish(sy, sy.get_build(ref), output, True, started=False)
        for line in sy.build_logs(ref, line_limit=lines):
            show_line(line, output)
