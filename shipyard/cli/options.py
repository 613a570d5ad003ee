"""Options shared by several commands, and parsing of ``K=V`` / ``id=@file`` arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli.output import Output

Url = Annotated[
    str | None, typer.Option("--url", help="Shipyard URL (env SHIPYARD_URL)", show_default=False)
]
Token = Annotated[
    str | None, typer.Option("--token", help="API token (env SHIPYARD_TOKEN)", show_default=False)
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]
Project = Annotated[str, typer.Option("--project", "--projectId", "-p", help="Project id")]


def key_values(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        result[key] = value
    return result


def file_contents(pairs: list[str] | None, what: str) -> dict[str, bytes]:
    """``name=@path`` reads a local file; ``name=text`` takes the text itself."""
    result: dict[str, bytes] = {}
    for name, value in key_values(pairs, what).items():
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                result[name] = path.read_bytes()
            except OSError as exc:
                raise typer.BadParameter(
                    f"cannot read {path}: {exc.strerror}", param_hint=what
                ) from exc
        else:
            result[name] = value.encode()
    return result


def json_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--input") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--input")
    return value
