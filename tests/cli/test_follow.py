"""``--follow`` as printed: one console for the status line and the lines, the id first,
Ctrl-C and a failing stream explained, whole lines in a pipe."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from rich.console import Console

from shipyard.cli import builds as cli_builds
from shipyard.cli import follow as cli_follow
from shipyard.cli import output
from shipyard.cli.follow import Status, elapsed, queue_position, step_of
from shipyard.cli.output import Output
from shipyard.client import Build, LogLine, ShipyardError

TS = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def build(**changes: Any) -> Build:
    fields: dict[str, Any] = {
        "id": "smooth-buoy-7112",
        "status": "QUEUED",
        "concluded": False,
        "success": False,
        "message": None,
        "branch": "main",
        "pull_request_id": None,
        "sha": None,
        "registry_uri": None,
        "created_at": TS,
        "concluded_at": None,
        "bundle_url": None,
        "project_id": "demo",
        "service_id": "web app",
        **changes,
    }
    return Build(**fields)


class Screens:
    """stdout and stderr as Rich consoles writing to strings; a terminal or a pipe each."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, out_terminal: bool, err_terminal: bool
    ) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        out = Console(file=self.out, force_terminal=out_terminal, width=60, soft_wrap=True)
        if not out_terminal:
            out = Console(file=self.out, width=output.UNBOUNDED, soft_wrap=True)
        err = Console(file=self.err, force_terminal=err_terminal, width=60)
        monkeypatch.setattr(output, "stdout", out)
        monkeypatch.setattr(output, "stderr", err)
        monkeypatch.setattr(cli_builds, "stderr", err)


LINES = ["==> building", "STEP 1/3: FROM busybox", "STEP 2/3: RUN echo hi", "hi", "==> uploading"]


class FakeSy:
    def __init__(self, fail: BaseException | None = None, pause_s: float = 0.0) -> None:
        self.fail, self.pause_s = fail, pause_s

    def follow_logs(self, _: Build) -> Iterator[LogLine]:
        import time

        for n, text in enumerate(LINES):
            if self.fail is not None and n == 2:
                raise self.fail
            time.sleep(self.pause_s)  # lets the status line refresh between lines
            yield LogLine("c", text, TS + timedelta(seconds=n))

    def wait(self, b: Build, poll_s: float) -> Build:
        return build(
            status="SUCCESS", concluded=True, success=True, registry_uri="r/demo/x@sha256:1"
        )

    def list_builds(self, *_: Any, **__: Any) -> Iterator[Build]:
        yield build(id="newer", created_at=TS + timedelta(seconds=5))
        yield build()
        yield build(id="older-1", created_at=TS - timedelta(seconds=5))
        yield build(id="older-done", status="SUCCESS", created_at=TS - timedelta(seconds=9))
        yield build(id="older-2", created_at=TS - timedelta(seconds=10))


def run_finish(sy: FakeSy, *, started: bool = True) -> int:
    with pytest.raises(typer.Exit) as done:
        cli_builds.finish(sy, build(), Output.TEXT, True, started=started)  # type: ignore[arg-type]
    return done.value.exit_code


def test_step_and_elapsed() -> None:
    assert step_of("STEP 2/7: RUN make") == "step 2/7"
    assert step_of("[2/3] STEP 1/4: COPY . .") == "stage 2/3 step 1/4"
    assert step_of("a line that mentions STEP 1/2: inside") is None
    assert elapsed(65) == "1m05s" and elapsed(3725) == "1h02m05s"


def test_status_line_shows_stage_elapsed_and_step() -> None:
    status = Status(build(), clock=lambda: TS + timedelta(seconds=83))
    status.set_queue("2 older builds of this workload queued ahead")
    assert status.line() == (
        "smooth-buoy-7112 · QUEUED · 1m23s · 2 older builds of this workload queued ahead"
    )
    status.seen("==> building")
    status.seen("STEP 3/7: RUN pip install .")
    status.set_queue("stale")  # the watch may answer after the build left the queue
    assert status.line() == "smooth-buoy-7112 · BUILDING · 1m23s · step 3/7"


def test_the_servers_queue_line_wins_over_the_estimate() -> None:
    status = Status(build(), clock=lambda: TS + timedelta(seconds=5))
    status.set_queue("next in line here; waiting for a free build slot")
    status.seen("Queued: position 3 of 7; project demo runs 2 of 2 builds")
    status.set_queue("an estimate arriving late")
    assert status.line() == (
        "smooth-buoy-7112 · QUEUED · 0m05s · position 3 of 7; project demo runs 2 of 2 builds"
    )


def test_queue_position_counts_older_queued_builds() -> None:
    assert queue_position(FakeSy(), build()) == "2 older builds of this workload queued ahead"  # type: ignore[arg-type]


def test_one_console_nothing_glued_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    screens = Screens(monkeypatch, out_terminal=True, err_terminal=True)
    monkeypatch.setattr(cli_follow, "QUEUE_POLL_S", 0.01)
    assert run_finish(FakeSy(pause_s=0.3)) == 0
    shown = screens.out.getvalue()
    # The status line was drawn on the lines' console, between lines …
    assert "smooth-buoy-7112 · BUILDING" in CSI.sub("", shown)
    assert "step 1/3" in CSI.sub("", shown)
    # … and every log line starts a line of its own: nothing of the status glued before it.
    segments = re.split(r"[\r\n]", CSI.sub("", shown))
    for n in range(len(LINES)):
        stamp = f"12:00:0{n} "
        holders = [s for s in segments if stamp in s]
        assert holders and all(s.startswith(stamp) for s in holders), (stamp, segments)
    assert "smooth-buoy-7112" not in segments[-1]  # transient: gone at the end
    err = screens.err.getvalue()
    assert err.index("smooth-buoy-7112") < err.index("SUCCESS")  # the id first


def test_pipe_gets_plain_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    screens = Screens(monkeypatch, out_terminal=False, err_terminal=False)
    long = "x" * 300
    LINES.append(long)
    try:
        assert run_finish(FakeSy()) == 0
    finally:
        LINES.pop()
    printed = screens.out.getvalue()
    assert "\x1b" not in printed and "\r" not in printed
    assert f"12:00:05 {long}\n" in printed
    output.show_builds([build(id="i" * 120, registry_uri="r" * 200)], Output.TEXT)
    assert "i" * 120 in screens.out.getvalue()


def test_ctrl_c_detaches_with_the_abort_command(monkeypatch: pytest.MonkeyPatch) -> None:
    screens = Screens(monkeypatch, out_terminal=False, err_terminal=False)
    assert run_finish(FakeSy(fail=KeyboardInterrupt())) == 130
    err = " ".join(screens.err.getvalue().split())
    assert (
        "detached — the build goes on; abort with "
        "shipyard abort service build -p demo -s 'web app' -b smooth-buoy-7112" in err
    )


@pytest.mark.parametrize("started", [True, False])
def test_follow_failing_after_the_start_names_the_build(
    monkeypatch: pytest.MonkeyPatch, started: bool
) -> None:
    screens = Screens(monkeypatch, out_terminal=False, err_terminal=False)
    denied = ShipyardError(403, "token lacks the permission 'READ_BUILD_LOGS'")
    assert run_finish(FakeSy(fail=denied), started=started) == 1
    err = " ".join(screens.err.getvalue().split())
    assert err.startswith("build smooth-buoy-7112")
    said = "was started, but following it failed" if started else "following build"
    assert said in err and "HTTP 403" in err
    assert "shipyard logs build -p demo -s 'web app' -b smooth-buoy-7112 --follow" in err
