"""Run git/buildah as one process group per step, streaming lines, with abort and timeout.

DESIGN.md rule 4: ``start_new_session=True``; abort = SIGTERM to the group, SIGKILL after a
short grace. Arguments are always a list, never a shell string.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.pipeline.errors import Cancelled, Stalled, TimedOut

LineSink = Callable[[str], None]
TERM_GRACE_S = 3.0
# A line is cut here while it is read: one endless line cannot fill the server's memory.
MAX_LINE_BYTES = 8000  # under the log's 8192-character line limit: the notice stays visible


@dataclass(frozen=True)
class Completed:
    returncode: int
    # The last lines of output, for classifying failures (e.g. buildah's final "Error: ...").
    tail: tuple[str, ...]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(
    argv: Sequence[str],
    *,
    on_line: LineSink,
    cancel: threading.Event,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    tail_lines: int = 20,
    max_line_bytes: int = MAX_LINE_BYTES,
    stall_timeout_s: float | None = None,
    stall_message: str = "made no progress",
) -> Completed:
    """Run ``argv``; each output line (stdout and stderr merged) goes to ``on_line``.

    Raises ``Cancelled`` when ``cancel`` is set and ``TimedOut`` past ``timeout_s``; in both
    cases the whole process group has been stopped before it returns. ``stall_timeout_s``:
    raises ``Stalled`` when the process neither printed a line nor read or wrote a byte
    (``/proc/<pid>/io``, all its threads; e.g. a push to a frozen registry) for that long.
    """
    if cancel.is_set():
        raise Cancelled()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail: list[str] = []
    progress = [time.monotonic()]  # last line or I/O seen

    def pump() -> None:
        assert proc.stdout is not None
        stream = proc.stdout
        while raw := stream.readline(max_line_bytes + 1):
            cut = len(raw) > max_line_bytes and not raw.endswith(b"\n")
            if cut:
                raw = raw[:max_line_bytes]
                dropped = 0
                # The rest of the line is read and dropped in bounded pieces.
                while (rest := stream.readline(max_line_bytes)) and not rest.endswith(b"\n"):
                    dropped += len(rest)
                dropped += len(rest)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if cut:
                line += f" …[line cut at {max_line_bytes} bytes, {dropped} more dropped]"
            tail.append(line)
            if len(tail) > tail_lines:
                del tail[0]
            progress[0] = time.monotonic()
            on_line(line)
        stream.close()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    outcome: type[Exception] | None = None
    io_seen, io_checked = _io_bytes(proc.pid), time.monotonic()
    while proc.poll() is None:
        # Wake when the child closes its output (it exited), not at the next 50 ms tick.
        if reader.is_alive():
            reader.join(0.05)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
        if cancel.is_set():
            outcome = Cancelled
            break
        if proc.poll() is None and time.monotonic() > deadline:
            outcome = TimedOut
            break
        if stall_timeout_s is not None and (now := time.monotonic()) - io_checked >= 1.0:
            io_now, io_checked = _io_bytes(proc.pid), now
            if io_now != io_seen:
                io_seen, progress[0] = io_now, now
            elif now - progress[0] > stall_timeout_s and proc.poll() is None:
                outcome = Stalled
                break
    if outcome is not None:
        _kill_group(proc)
    reader.join(timeout=5)
    if outcome is Cancelled:
        raise Cancelled()
    if outcome is Stalled:
        raise Stalled(f"{stall_message} for {stall_timeout_s:g} s")
    if outcome is TimedOut:
        raise TimedOut(f"{Path(argv[0]).name} timed out after {timeout_s:g} s")
    return Completed(proc.returncode, tuple(tail))


def _io_bytes(pid: int) -> int:
    """Bytes the process read and wrote so far (every syscall, sockets included)."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return -1
    total = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("rchar", "wchar"):
            total += int(value)
    return total
