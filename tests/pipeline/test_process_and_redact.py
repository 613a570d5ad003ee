"""The process runner (one process group per step) and log redaction."""

from __future__ import annotations

import threading
import time

import pytest

from shipyard.pipeline.errors import Cancelled, TimedOut
from shipyard.pipeline.process import run
from shipyard.pipeline.redact import MASK, Redactor


def test_lines_and_return_code() -> None:
    lines: list[str] = []
    done = run(
        ["sh", "-c", "echo one; echo two >&2; exit 3"],
        on_line=lines.append,
        cancel=threading.Event(),
        timeout_s=10,
    )
    assert done.returncode == 3 and lines == ["one", "two"] and done.tail == ("one", "two")


def test_cancel_kills_the_whole_group() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run(
            ["sh", "-c", "sleep 30 & sleep 30; wait"],
            on_line=lambda _: None,
            cancel=cancel,
            timeout_s=60,
        )
    assert time.monotonic() - started < 5


def test_timeout() -> None:
    with pytest.raises(TimedOut):
        run(["sleep", "30"], on_line=lambda _: None, cancel=threading.Event(), timeout_s=0.3)


def test_redactor_masks_secrets_and_their_lines() -> None:
    redact = Redactor([b"multi\nline-secret", "token-123", b"ab"])
    assert redact("value token-123 here") == f"value {MASK} here"
    assert redact("x line-secret y") == f"x {MASK} y"
    assert redact("ab stays: too short to mask") == "ab stays: too short to mask"
