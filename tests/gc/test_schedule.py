"""The collection schedule: every interval, never at start, stops, survives a failure."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from shipyard.gc.collector import Report, Schedule


def test_runs_every_interval_and_stops() -> None:
    runs: list[float] = []
    ran_twice = threading.Event()

    def collect() -> Report:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("a failed run does not end the schedule")
        ran_twice.set()
        return Report(dry_run=False, started_at=datetime.now(UTC))

    started = time.monotonic()
    schedule = Schedule(collect, 0.1)
    schedule.start()
    assert ran_twice.wait(5)
    schedule.stop()
    assert runs[0] - started >= 0.1  # not at start
    count = len(runs)
    time.sleep(0.3)
    assert len(runs) <= count + 1


def test_interval_zero_is_off() -> None:
    schedule = Schedule(lambda: Report(dry_run=False, started_at=datetime.now(UTC)), 0)
    schedule.start()
    assert schedule._thread is None
