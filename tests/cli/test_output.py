"""The CLI prints server data as inert text: no terminal escapes, no Rich markup."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from rich.console import Console

from shipyard.cli import builds as cli_builds
from shipyard.cli import output
from shipyard.cli.output import Output
from shipyard.cli.safe import clean, escape
from shipyard.client import Build, LogLine

HOSTILE = (
    "\x1b]0;pwned\x07title \x1b[2Jcleared \x1b[31mred\x1b[0m [/] [bold red]x \x9b2J\x07\x08\r!"
)
CLEAN = "title cleared red [/] [bold red]x !"
TS = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (HOSTILE, CLEAN),
        ("tab\tkept", "tab\tkept"),
        ("\x1b]52;c;aGk=\x1b\\clip", "clip"),  # OSC 52 (clipboard) ended by ST
        ("\x1bPdevice\x1b\\ok", "ok"),  # DCS
        ("unterminated \x1b]0;title", "unterminated "),
        ("\x1b7saved\x1b8", "saved"),
        ("ümlaut ✓", "ümlaut ✓"),
    ],
)
def test_clean(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_escape_neutralises_markup() -> None:
    assert escape("[bold red]x [/]") == r"\[bold red]x \[/]"


class Consoles:
    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        err_terminal: bool = True,
        out_terminal: bool = True,
    ) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        # A terminal that takes colour: where an escape would do harm. (The status line of
        # --follow draws with cursor controls of its own on a terminal: not one there.)
        out = Console(
            file=self.out, force_terminal=out_terminal, width=200, color_system="standard"
        )
        err = Console(
            file=self.err, force_terminal=err_terminal, width=200, color_system="standard"
        )
        monkeypatch.setattr(output, "stdout", out)
        monkeypatch.setattr(output, "stderr", err)
        monkeypatch.setattr(cli_builds, "stderr", err)

    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


def build(**changes: Any) -> Build:
    fields: dict[str, Any] = {
        "id": "joyous-view-6290",
        "status": "FAILURE",
        "concluded": True,
        "success": False,
        "message": f"failed: {HOSTILE}",
        "branch": "[/]main",
        "pull_request_id": None,
        "sha": None,
        "registry_uri": "[bold]img\x1b[2J",
        "created_at": TS,
        "concluded_at": TS,
        "bundle_url": None,
        **changes,
    }
    return Build(**fields)


def assert_inert(printed: str) -> None:
    for bad in ("pwned", "\x1b]", "\x1b[2J", "\x9b", "\x07", "\x08", "\r"):
        assert bad not in printed, (bad, printed)
    # Rich's own colour codes are fine; the server's "\x1b[31m" was removed with the rest.


def test_log_lines_and_builds_print_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    consoles = Consoles(monkeypatch)
    output.show_line(LogLine("c", HOSTILE, TS), Output.TEXT)
    output.show_build(build(), Output.TEXT)
    output.show_builds([build()], Output.TEXT)
    output.show_record({"name": "[/]x\x1b[2J"}, Output.TEXT, ["name"])
    printed = consoles.text()
    assert_inert(printed)
    assert f"12:00:00 {CLEAN}" in printed
    assert "[/]main" in printed and "[bold]img" in printed and "[/]x" in printed


class FakeSy:
    def follow_logs(self, _: Build) -> Iterator[LogLine]:
        for line in ("==> [/]: stage name from a hostile line", HOSTILE, "[bold red]x [/]"):
            yield LogLine("c", line, TS)

    def wait(self, _: Build, poll_s: float) -> Build:
        return build()


def test_follow_survives_markup_and_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The status line parses its text whether or not it is drawn: "==> [/]" crashed it.
    consoles = Consoles(monkeypatch, err_terminal=False, out_terminal=False)
    with pytest.raises(typer.Exit) as done:
        cli_builds.finish(FakeSy(), build(status="BUILDING"), Output.TEXT, True)  # type: ignore[arg-type]
    assert done.value.exit_code == 1  # FAILURE, reported; no MarkupError
    printed = consoles.text()
    assert_inert(printed)
    assert "[bold red]x [/]" in printed
    assert f"failed: {CLEAN}" in printed
