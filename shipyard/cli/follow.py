"""``--follow``: log lines and one live status line on the same Rich console.

The status line (stage, elapsed time, ``step n/m``, queue position) is a transient
``rich.live.Live`` on the console the log lines are printed to, so Rich moves it below each
line it prints: nothing is glued to a log line. When stdout is not a terminal the lines go
to the pipe as they are and the status line, if any, is drawn on stderr alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from shipyard.cli import output
from shipyard.cli.output import Output, show_line
from shipyard.cli.safe import clean
from shipyard.client import Build, Shipyard, ShipyardError

# buildah: "STEP 3/7: RUN …", multi-stage "[2/3] STEP 1/4: COPY …".
_STEP = re.compile(r"^(?:\[(?P<stage>\d+)/(?P<stages>\d+)\] )?STEP (?P<n>\d+)/(?P<m>\d+): ")
QUEUE_POLL_S = 3.0
# A queued build's log line from the dispatcher: "Queued: position 3 of 7; <what it waits on>".
QUEUED_PREFIX = "Queued: "
# Enough for any real queue; a list call costs the server one page each.
_QUEUE_SCAN = 500


def step_of(log: str) -> str | None:
    """``step n/m`` (with ``stage i/k`` for a multi-stage Dockerfile) from a buildah line."""
    match = _STEP.match(log)
    if match is None:
        return None
    step = f"step {match['n']}/{match['m']}"
    return f"stage {match['stage']}/{match['stages']} {step}" if match["stage"] else step


def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Status:
    """What the status line says; rendered afresh at each refresh, so the clock runs
    while no line arrives."""

    def __init__(self, build: Build, clock: Callable[[], datetime] | None = None) -> None:
        self.build_id = build.id
        self.since = build.created_at
        self.stage = build.status
        self.step: str | None = None
        self.queue: str | None = None
        self.server_queue = False
        self._clock = clock or (lambda: datetime.now(UTC))
        self._spinner = Spinner("dots")
        self._lock = threading.Lock()

    def seen(self, log: str) -> None:
        with self._lock:
            if log.startswith("==> "):
                self.stage = log[4:].split(":", 1)[0].strip().upper()
                self.step = None
                self.queue = None
            elif log.startswith(QUEUED_PREFIX):
                # The server's own word (scale-out dispatch): the global position and the
                # limit the build waits on. It wins over the estimate from the list.
                self.queue = log.removeprefix(QUEUED_PREFIX).strip()
                self.server_queue = True
            elif (step := step_of(log)) is not None:
                self.step = step

    def set_queue(self, queue: str | None) -> None:
        with self._lock:
            if self.stage == "QUEUED" and not self.server_queue:
                self.queue = queue

    def line(self) -> str:
        with self._lock:
            parts = [self.build_id, self.stage]
            parts.append(elapsed((self._clock() - self.since).total_seconds()))
            if self.step:
                parts.append(self.step)
            if self.queue:
                parts.append(self.queue)
        return clean(" · ".join(parts))

    def __rich__(self) -> RenderableType:
        self._spinner.update(text=Text(self.line()))
        return self._spinner


def queue_position(sy: Shipyard, build: Build) -> str | None:
    """How many QUEUED builds of the same service or job are older: all the list endpoint
    can tell (the server's limit, SHIPYARD_MAX_CONCURRENT_BUILDS, is shared by every
    project, and other workloads' builds are not visible to a project token)."""
    if build.project_id is None:
        return None
    older = 0
    for seen, other in enumerate(
        sy.list_builds(build.project_id, build.service_id, build.job_id, per_page=100)
    ):
        if seen >= _QUEUE_SCAN:
            break
        if (
            other.id != build.id
            and other.status == "QUEUED"
            and other.created_at < build.created_at
        ):
            older += 1
    if older == 0:
        return "next in line here; waiting for a free build slot"
    return f"{older} older build{'s' if older != 1 else ''} of this workload queued ahead"


class _QueueWatch(threading.Thread):
    def __init__(self, sy: Shipyard, build: Build, status: Status) -> None:
        super().__init__(daemon=True, name="shipyard-queue-watch")
        self._sy, self._build, self._status = sy, build, status
        self.stop = threading.Event()

    def run(self) -> None:
        while (
            not self.stop.is_set()
            and self._status.stage == "QUEUED"
            and not self._status.server_queue
        ):
            try:
                self._status.set_queue(queue_position(self._sy, self._build))
            except ShipyardError:  # a hint only: the log stream reports real failures
                return
            self.stop.wait(QUEUE_POLL_S)


def status_console() -> Console | None:
    """Where the status line goes: the log lines' own console when it is a terminal, else
    stderr when that is one (the lines go to a pipe, not to this screen), else nowhere."""
    if output.stdout.is_terminal:
        return output.stdout
    if output.stderr.is_terminal:
        return output.stderr
    return None


def follow(sy: Shipyard, build: Build, out: Output) -> Build:
    """Print lines as they come under a live status line; returns the end state.
    ``KeyboardInterrupt`` and ``ShipyardError`` propagate (the status line is gone by then)."""
    status = Status(build)
    console = status_console()
    watch = _QueueWatch(sy, build, status) if build.status == "QUEUED" else None
    live = (
        Live(
            status,
            console=console,
            transient=True,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        if console is not None
        else None
    )
    try:
        if live is not None:
            live.start()
        if watch is not None:
            watch.start()
        for line in sy.follow_logs(build):
            status.seen(line.log)
            show_line(line, out)
    finally:
        if watch is not None:
            watch.stop.set()
        if live is not None:
            live.stop()
    return sy.wait(build, poll_s=0.5)
