"""``shipyard registry credentials``: pull credentials for a project's images."""

from __future__ import annotations

import typer

from shipyard.cli.builds import client
from shipyard.cli.options import OutputOpt, Project, Token, Url
from shipyard.cli.output import Output, emit_json, stderr, stdout

registry_app = typer.Typer(help="The embedded image registry.", no_args_is_help=True)

FIELDS = ("registry", "username", "password", "expiresAt")


@registry_app.command("credentials")
def credentials(
    project: Project, output: OutputOpt = Output.TEXT, url: Url = None, token: Token = None
) -> None:
    """Print an expiring, pull-only credential for the project's images."""
    with client(url, token) as sy:
        data = sy.registry_credentials(project)
    if output is Output.JSON:
        emit_json(data)
        return
    # Plain ``key: value`` lines, not a table: a table would wrap the long password.
    for key in FIELDS:
        stdout.out(f"{key}: {data.get(key, '')}", highlight=False)
    # To stderr: stdout stays the record alone, and the hint names no secret.
    stderr.print(
        f"[dim]skopeo login --tls-verify=false -u {data['username']} {data['registry']}[/]",
        highlight=False,
    )
