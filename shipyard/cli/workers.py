"""``shipyard workers``: the processes that run builds, through the API with the admin token."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from shipyard.cli.builds import client
from shipyard.cli.options import OutputOpt, Token, Url
from shipyard.cli.output import Output, emit_json, stdout
from shipyard.cli.safe import text


def _alive(row: dict[str, Any]) -> str:
    if row.get("alive") is None:
        return "unregistered"
    return "alive" if row["alive"] else "NOT RESPONDING"


def _heartbeat(row: dict[str, Any]) -> str:
    age = row.get("heartbeatAgeS")
    return "" if age is None else f"{row.get('lastHeartbeatAt', '')} ({float(age):.1f} s ago)"


def workers(output: OutputOpt = Output.TEXT, url: Url = None, token: Token = None) -> None:
    """List build workers (admin token only): liveness, last heartbeat, running builds."""
    with client(url, token) as sy:
        rows = sy.list_workers()
    if output is Output.JSON:
        emit_json(rows)
        return
    table = Table("id", "host", "pid", "state", "last heartbeat", "running", "builds")
    for row in rows:
        slots = row.get("concurrency")
        table.add_row(
            text(row["id"]),
            text(row.get("hostname") or ""),
            text(row.get("pid") or ""),
            text(_alive(row)),
            text(_heartbeat(row)),
            text(f"{row.get('running', 0)}" + (f"/{slots}" if slots is not None else "")),
            text(", ".join(row.get("builds") or [])),
        )
    stdout.print(table)
