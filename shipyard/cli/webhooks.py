"""``shipyard deliveries`` (what each webhook delivery did, and why) and ``shipyard webhook``
(the project's webhook URLs; ``--rotate`` makes a new secret, printed once)."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from shipyard.cli.builds import client
from shipyard.cli.options import OutputOpt, Project, Token, Url
from shipyard.cli.output import Output, emit_json, stdout


def _outcomes(delivery: dict[str, Any]) -> str:
    lines = [f"{r['entity']} {r['id']}: {r['text']}" for r in delivery.get("results", [])]
    note = delivery.get("note")
    return "\n".join(lines) or (note or delivery.get("state", ""))


def deliveries(
    project: Project,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many")] = 20,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """List the project's webhook deliveries, newest first: per service or job,
    ``started <build id>`` or ``skipped: <reason>``."""
    with client(url, token) as sy:
        rows = list(itertools.islice(sy.list_webhook_deliveries(project), limit))
    if output is Output.JSON:
        for row in rows:
            emit_json(row, line=True)
        return
    table = Table()
    for column in ("received", "provider", "event", "ref", "after", "outcome"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["receivedAt"][:19].replace("T", " "),
            row["provider"],
            Text(row["event"] + (f" ({row['action']})" if row.get("action") else "")),
            Text(row.get("ref", "")),
            (row.get("after") or "")[:12],
            Text(_outcomes(row)),
        )
    stdout.print(table)


def webhook(
    project: Project,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new secret (printed once)")
    ] = False,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Show the project's webhook URLs; ``--rotate`` creates (or replaces) its secret."""
    with client(url, token) as sy:
        data = sy.rotate_webhook_secret(project) if rotate else sy.webhook(project)
    if output is Output.JSON:
        emit_json(data)
        return
    stdout.out(f"configured: {str(data['configured']).lower()}", highlight=False)
    if "secret" in data:
        stdout.out(f"secret: {data['secret']}", highlight=False)
    for provider, address in data["urls"].items():
        stdout.out(f"{provider}: {address}", highlight=False)
