"""Rendering for people (Rich tables) or scripts (``--output json``: the API's data)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shipyard.cli.safe import clean, text
from shipyard.client import Build, LogLine

# A pipe or a file gets whole lines: no wrapping at 80 columns, no cut ids or image references
# (Rich assumes 80 columns when it cannot ask a terminal).
UNBOUNDED = 1 << 16


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=UNBOUNDED)
    return console


stdout = make_console()
stderr = make_console(stderr=True)

STATUS_STYLE = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "CRASHED": "red",
    "ABORTED": "yellow",
    "SUBMISSION_FAILURE": "red",
}


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


def emit_json(data: Any, *, line: bool = False) -> None:
    """``line``: one compact JSON document per line (streams: log lines, then the build)."""
    if line:
        # Through the console: a live status line on it moves below the line.
        stdout.out(json.dumps(data, default=str), highlight=False)
        return
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def show_line(line: LogLine, output: Output) -> None:
    if output is Output.JSON:
        record = {"containerId": line.container_id, "log": line.log, "ts": line.ts.isoformat()}
        emit_json(record, line=True)
    else:
        # out() parses no markup; clean() keeps escapes in the line from the terminal.
        stdout.out(f"{line.ts.strftime('%H:%M:%S')} {clean(line.log)}", highlight=False)


def status_text(status: str) -> Text:
    return text(status, STATUS_STYLE.get(status, "cyan"))


def show_build(build: Build, output: Output) -> None:
    if output is Output.JSON:
        emit_json(dict(build.raw))
        return
    table = Table(show_header=False, box=None)
    rows: Sequence[tuple[str, str | Text | None]] = (
        ("id", build.id),
        ("status", status_text(build.status)),
        ("branch", build.branch),
        ("pull request", str(build.pull_request_id) if build.pull_request_id else None),
        ("sha", build.sha),
        ("bundle", build.bundle_url),
        ("image", build.registry_uri),
        ("message", build.message),
        ("created", build.created_at.isoformat()),
        ("trigger", _trigger(build.trigger)),
    )
    for key, value in rows:
        if value:
            table.add_row(
                Text(key, style="bold"), value if isinstance(value, Text) else text(value)
            )
    stdout.print(table)


def _trigger(trigger: Mapping[str, Any]) -> str:
    if trigger.get("type") != "webhook":
        return str(trigger.get("type", "api"))
    provider, event = trigger.get("provider"), trigger.get("event")
    return f"webhook ({provider} {event}, delivery {trigger.get('deliveryId')})"


def show_builds(builds: Iterable[Build], output: Output) -> None:
    items = list(builds)
    if output is Output.JSON:
        emit_json([dict(b.raw) for b in items])
        return
    table = Table("id", "status", "ref", "sha", "created", "message")
    for b in items:
        ref = (
            b.branch
            or (f"PR {b.pull_request_id}" if b.pull_request_id else "")
            or (b.bundle_url or "")
        )
        table.add_row(
            text(b.id),
            status_text(b.status),
            text(ref),
            text((b.sha or "")[:12]),
            b.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            text(b.message or ""),
        )
    stdout.print(table)


def show_record(data: dict[str, Any], output: Output, fields: Sequence[str]) -> None:
    if output is Output.JSON:
        emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key in fields:
        if data.get(key) is not None:
            table.add_row(Text(key, style="bold"), text(data[key]))
    stdout.print(table)
