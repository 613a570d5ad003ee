"""``shipyard tokens list|revoke``: through the API, with the admin token (``tokens create``
runs on the server's machine: it prints the new token once)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shipyard.builds.permissions import ALL
from shipyard.cli.builds import client
from shipyard.cli.options import OutputOpt, Token, Url
from shipyard.cli.output import Output, emit_json, stderr, stdout
from shipyard.cli.safe import text


def _permissions(names: list[str]) -> str:
    return "all" if set(names) >= {p.value for p in ALL} else "; ".join(names)


def tokens_list(output: OutputOpt = Output.TEXT, url: Url = None, token: Token = None) -> None:
    """List API tokens (admin token only): id, name, project, permissions; never the token."""
    with client(url, token) as sy:
        rows = sy.list_tokens()
    if output is Output.JSON:
        emit_json(rows)
        return
    table = Table("id", "name", "project", "permissions", "created")
    for row in rows:
        table.add_row(
            text(row["id"]),
            text(row["name"]),
            text(row.get("projectId") or "(all)"),
            text(_permissions(list(row.get("permissions") or []))),
            text(row.get("createdAt", "")),
        )
    stdout.print(table)


def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `shipyard tokens list`)")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Revoke an API token (admin token only); it stops working at once."""
    with client(url, token) as sy:
        sy.revoke_token(token_id)
    stderr.print(f"token {token_id} revoked")
