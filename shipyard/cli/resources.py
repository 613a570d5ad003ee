"""``shipyard create project|service|job`` and ``shipyard login``."""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
import typer

from shipyard.cli import config
from shipyard.cli.builds import client
from shipyard.cli.options import OutputOpt, Project, Token, Url, key_values
from shipyard.cli.output import Output, show_record, stderr
from shipyard.cli.safe import escape

create_app = typer.Typer(help="Create projects, services and jobs.", no_args_is_help=True)

Name = Annotated[str, typer.Option("--name", help="Name (its slug becomes the id)")]
Repo = Annotated[
    str, typer.Option("--repo", help="Git URL: https://, ssh://, file:// or user@host:path")
]
Branch = Annotated[
    str | None, typer.Option("--branch", help="Branch to build (combined services, jobs)")
]
Dockerfile = Annotated[str, typer.Option("--dockerfile", help="Dockerfile path in the repo")]
WorkDir = Annotated[str, typer.Option("--workdir", help="Build context in the repo")]
BuildArg = Annotated[
    list[str] | None, typer.Option("--build-arg", help="Stored KEY=VALUE, repeatable")
]
Ignore = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore",
        help="Path rule (gitignore syntax) for the most recent relevant commit, repeatable",
    ),
]
FIELDS = ("id", "name", "projectId", "serviceType", "jobType", "createdAt")


@create_app.command("project")
def create_project(
    name: Name,
    description: Annotated[str | None, typer.Option()] = None,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a project."""
    with client(url, token) as sy:
        show_record(dict(sy.create_project(name, description).raw), output, FIELDS)


@create_app.command("service")
def create_service(
    project: Project,
    name: Name,
    repo: Repo,
    kind: Annotated[str, typer.Option("--kind", help="combined or build")] = "combined",
    branch: Branch = None,
    dockerfile: Dockerfile = "/Dockerfile",
    workdir: WorkDir = "/",
    build_arg: BuildArg = None,
    ignore: Ignore = None,
    allow_list: Annotated[
        bool, typer.Option("--allow-list", help="--ignore rules list the paths that count")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Never reuse cached layers")] = False,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a combined service (builds its branch) or a build service (any branch or PR)."""
    if kind not in ("combined", "build"):
        raise typer.BadParameter("must be combined or build", param_hint="--kind")
    service_kind: Literal["combined", "build"] = "combined" if kind == "combined" else "build"
    with client(url, token) as sy:
        workload = sy.create_service(
            project, name, kind=service_kind, repo_url=repo, branch=branch,
            dockerfile_path=dockerfile, work_dir=workdir,
            build_arguments=key_values(build_arg, "--build-arg") or None,
            path_ignore_rules=ignore or None, is_allow_list=allow_list, use_cache=not no_cache,
        )  # fmt: skip
        show_record(dict(workload.raw), output, FIELDS)


@create_app.command("job")
def create_job(
    project: Project,
    name: Name,
    repo: Repo,
    branch: Annotated[str, typer.Option("--branch", help="Branch the job builds")],
    dockerfile: Dockerfile = "/Dockerfile",
    workdir: WorkDir = "/",
    build_arg: BuildArg = None,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a manual job."""
    with client(url, token) as sy:
        workload = sy.create_job(
            project, name, repo_url=repo, branch=branch, dockerfile_path=dockerfile,
            work_dir=workdir, build_arguments=key_values(build_arg, "--build-arg") or None,
        )  # fmt: skip
        show_record(dict(workload.raw), output, FIELDS)


def login(
    url: Annotated[str, typer.Option("--url", help="Shipyard URL")] = config.DEFAULT_URL,
    token: Annotated[
        str, typer.Option("--token", prompt=True, hide_input=True, help="API token")
    ] = "",
) -> None:
    """Check a token against the server and save URL and token for later commands."""
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/login", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    except httpx.HTTPError as exc:
        stderr.print(f"[red]Cannot reach {escape(url)}:[/] {escape(exc)}")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        stderr.print(f"[red]Login refused (HTTP {response.status_code}).[/]")
        raise typer.Exit(1)
    path = config.save(url, token)
    stderr.print(f"Logged in to {escape(url)}; saved to {escape(path)}")
