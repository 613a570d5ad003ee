"""``shipyard build [PATH] -p P -s S [--follow]``: build a local directory (like ``gcloud
builds submit`` or ``depot build .``). The directory goes up as a streamed tar.gz honouring
``.dockerignore`` (``POST /v1/projects/{p}/uploads``), then a build of that upload starts
(``{"uploadId": …}``) and, with ``--follow``, is followed on the same screen as ``shipyard
start service build --follow``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from shipyard.cli.builds import (
    BuildArg,
    BuildFile,
    Dockerfile,
    Follow,
    SecretMount,
    Service,
    Target,
    _overrides,
    client,
    finish,
)
from shipyard.cli.options import OutputOpt, Project, Token, Url
from shipyard.cli.output import Output, stderr
from shipyard.cli.safe import text
from shipyard.uploads.context import ContextTooLarge, stream_context

DEFAULT_MAX_MB = 512  # the server's default SHIPYARD_MAX_UPLOAD_BYTES


def build(
    path: Annotated[Path, typer.Argument(help="The directory to build (default: .)")] = Path("."),
    project: Project = "",
    service: Service = "",
    build_arg: BuildArg = None,
    build_file: BuildFile = None,
    secret_mount: SecretMount = None,
    dockerfile: Dockerfile = None,
    target: Target = None,
    max_mb: Annotated[
        int, typer.Option("--max-mb", help="Refuse to send more than this (MiB of files)")
    ] = DEFAULT_MAX_MB,
    do_follow: Follow = False,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload a local directory and build it: `shipyard build ./app -p P -s S --follow`."""
    root = path.resolve()
    if not root.is_dir():
        stderr.print(Text.assemble(("error: ", "red"), text(f"{path} is not a directory")))
        raise typer.Exit(2)
    if not project or not service:
        stderr.print(Text.assemble(("error: ", "red"), "--project and --service are required"))
        raise typer.Exit(2)
    overrides = _overrides({}, build_arg, build_file, secret_mount, dockerfile, None, target)

    def skipped(name: str) -> None:
        stderr.print(text(f"skipped {name}: not a file, directory or link", "dim"))

    with client(url, token) as sy:
        chunks = stream_context(root, max_bytes=max_mb * 1024 * 1024, on_skip=skipped)
        try:
            upload = sy.upload_context(project, chunks)
        except ContextTooLarge as exc:
            stderr.print(Text.assemble(("error: ", "red"), text(str(exc))))
            raise typer.Exit(1) from None
        stderr.print(
            Text.assemble(
                "uploaded ", text(str(root)), f" ({upload['size']} bytes) as ",
                text(str(upload["id"]), "bold"),
            )
        )  # fmt: skip
        started = sy.start_service_build(project, service, upload_id=str(upload["id"]), **overrides)
        finish(sy, started, output, do_follow)
