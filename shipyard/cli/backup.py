"""``shipyard backup FILE`` / ``shipyard restore FILE``: on the server's machine, with the
server's settings (``SHIPYARD_DATA_DIR``, ``SHIPYARD_DATABASE_URL``, …)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from shipyard.backup import archive
from shipyard.builds.errors import ShipyardError
from shipyard.cli.output import stderr
from shipyard.cli.safe import text
from shipyard.settings import Settings, prepare

File = Annotated[Path, typer.Argument(help="The archive (a .tar.gz)", show_default=False)]


def _fail(exc: ShipyardError) -> typer.Exit:
    stderr.print(Text.assemble(("error: ", "red"), text(exc.message)))
    return typer.Exit(1)


def backup(file: File) -> None:
    """Write a consistent snapshot of the database with the secret key, the admin token and
    the registry's signing key into FILE (mode 0600). Safe while the server runs."""
    settings = prepare(Settings())
    try:
        report = archive.backup(settings, file)
    except ShipyardError as exc:
        raise _fail(exc) from None
    stderr.print(
        Text.assemble(
            "backup written: ",
            text(str(report.path), "bold"),
            f" ({report.database} database; keys: {', '.join(report.files)})",
        ),
        soft_wrap=True,
    )
    stderr.print(Text.assemble(("WARNING: ", "bold red"), archive.LOSS_WARNING))


def restore(
    file: File,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite even while a server runs on the data dir")
    ] = False,
) -> None:
    """Install FILE's database and keys into this server's data dir (stop the server first;
    files replaced are kept as NAME.before-restore-<time>)."""
    settings = Settings()
    try:
        report = archive.restore(settings, file, force=force)
    except ShipyardError as exc:
        raise _fail(exc) from None
    stderr.print(
        Text.assemble(
            "restored into ",
            text(str(settings.data_dir.resolve()), "bold"),
            f": {report.database} database, {', '.join(report.files)}",
        ),
        soft_wrap=True,
    )
    for kept in report.moved_aside:
        stderr.print(Text.assemble("kept the replaced file as ", text(kept)), soft_wrap=True)
    for name in ("SHIPYARD_SECRET_KEY", "SHIPYARD_ADMIN_TOKEN"):
        if os.environ.get(name):
            stderr.print(
                f"[yellow]note:[/] {name} is set and wins over the restored file: "
                "set it to the backed-up value (or unset it)"
            )
    stderr.print("Images are not in the archive: rebuild, or restore the registry's storage.")
