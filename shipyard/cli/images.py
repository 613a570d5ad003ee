"""``shipyard images import|list``: the shared base images (on the server's machine, as root:
the base-image store is root's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from shipyard.builds.errors import ShipyardError
from shipyard.cli.options import OutputOpt
from shipyard.cli.output import Output, emit_json, stderr, stdout
from shipyard.cli.safe import text
from shipyard.images import importer
from shipyard.settings import Settings, prepare

images_app = typer.Typer(
    help="Shared base images every project may build FROM.", no_args_is_help=True
)


@images_app.command("import")
def import_(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="An OCI layout directory, an OCI archive or a docker archive", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="NAME[:TAG] to build FROM as localhost/NAME:TAG (e.g. shared/busybox:1.36)",
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="Copy from a registry instead: host/path:tag", show_default=False
        ),
    ] = None,
    creds: Annotated[
        str | None,
        typer.Option("--creds", help="USER:PASSWORD for --from's registry", show_default=False),
    ] = None,
    authfile: Annotated[
        Path | None,
        typer.Option("--authfile", help="A containers auth.json for --from", show_default=False),
    ] = None,
    tls_verify: Annotated[
        bool, typer.Option("--tls-verify/--no-tls-verify", help="For --from")
    ] = True,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry",
            help="Push to the embedded registry instead (NAME under shared/; the server must "
            "be running): FROM 127.0.0.1:PORT/shared/NAME:TAG",
        ),
    ] = False,
) -> None:
    """Import a base image into the shared base-image store: every project can then build
    `FROM localhost/NAME:TAG` (picked up by each project before its next build)."""
    try:
        if (source is None) == (from_ is None):
            raise typer.BadParameter("give a SOURCE path or --from REFERENCE (one of them)")
        if from_ is None and (creds is not None or authfile is not None):
            raise typer.BadParameter("--creds and --authfile are for --from")
        if creds is not None and authfile is not None:
            raise typer.BadParameter("give --creds or --authfile, not both")
        if from_ is not None:
            reference = importer.remote_reference(from_)
        else:
            assert source is not None
            reference = importer.source_reference(source)
        chosen = name or importer.default_name(reference)
        importer.local_name(chosen)  # a bad name fails before any copy
        settings = prepare(Settings())
        copy = importer.push_to_registry if registry else importer.import_image
        done = copy(
            settings, reference, chosen, creds=creds, authfile=authfile, tls_verify=tls_verify
        )
    except ShipyardError as exc:
        stderr.print(Text.assemble(("error: ", "red"), text(exc.message)))
        raise typer.Exit(1) from None
    stdout.out(done.name, highlight=False)
    stderr.print(
        Text.assemble(
            f"imported into the {'embedded registry' if registry else 'base-image store'} (",
            text(done.digest), "): build ",
            (f"FROM {done.name}", "bold"),
        ),
        soft_wrap=True,
    )  # fmt: skip


@images_app.command("list")
def list_(output: OutputOpt = Output.TEXT) -> None:
    """The images in the shared base-image store."""
    try:
        images = importer.list_images(prepare(Settings()))
    except ShipyardError as exc:
        stderr.print(Text.assemble(("error: ", "red"), text(exc.message)))
        raise typer.Exit(1) from None
    if output is Output.JSON:
        emit_json(images)
        return
    table = Table("name", "digest", "size")
    for image in images:
        names = image["names"] if isinstance(image["names"], list) else []
        table.add_row(text(", ".join(map(str, names))), text(image["digest"]), text(image["size"]))
    stdout.print(table)
