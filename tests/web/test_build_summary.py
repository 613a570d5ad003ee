"""The build page's summary: stages from the executor's markers, buildah's steps with their
durations and cache hits (single- and multi-stage output)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.web.build_summary import summarise

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_stages_and_steps_of_a_successful_multi_stage_build() -> None:
    lines = [
        (1, at(1), "==> cloning"),
        (8, at(3), "==> building"),
        (9, at(3), "[1/2] STEP 1/3: FROM localhost/base AS app"),
        (10, at(4), "[1/2] STEP 2/3: COPY app.txt /app/"),
        (11, at(4), "--> Using cache 8a944f64c5b8"),
        (12, at(5), "[1/2] STEP 3/3: RUN make"),
        (20, at(12), "[2/2] STEP 1/1: FROM app"),
        (30, at(13), "==> uploading"),
    ]
    summary = summarise(lines, created=at(0), concluded=at(15), status="SUCCESS")
    assert [(s.name, s.state) for s in summary.stages] == [
        ("queued", "done"),
        ("cloning", "done"),
        ("building", "done"),
        ("uploading", "done"),
    ]
    assert [s.seconds for s in summary.stages] == [1, 2, 10, 2]
    assert [(s.stage, s.number, s.total) for s in summary.steps] == [
        ("1/2", 1, 3),
        ("1/2", 2, 3),
        ("1/2", 3, 3),
        ("2/2", 1, 1),
    ]
    assert [s.seconds for s in summary.steps] == [1, 1, 7, 1]
    assert [s.cached for s in summary.steps] == [False, True, False, False]
    assert summary.cache_hits == 1
    assert summary.steps[2].line == 13 and summary.steps[2].text == "RUN make"
    assert summary.result == "SUCCESS"


def test_a_running_build_has_a_current_stage_and_an_open_step() -> None:
    lines = [(0, at(1), "==> cloning"), (5, at(2), "==> building"), (6, at(2), "STEP 1/2: FROM x")]
    summary = summarise(lines, created=at(0), concluded=None, status="BUILDING")
    assert [s.state for s in summary.stages] == ["done", "done", "current", "pending"]
    assert summary.steps[0].seconds is None
    assert summary.result is None


def test_an_aborted_build_skips_the_stages_it_never_reached() -> None:
    lines = [(0, at(1), "==> cloning"), (5, at(2), "==> building")]
    summary = summarise(lines, created=at(0), concluded=at(9), status="ABORTED")
    assert [s.state for s in summary.stages] == ["done", "done", "failed", "skipped"]
    assert summary.stages[2].seconds == 7


def test_a_build_aborted_while_queued() -> None:
    summary = summarise([], created=at(0), concluded=at(4), status="ABORTED")
    assert [s.state for s in summary.stages] == ["failed", "skipped", "skipped", "skipped"]


def test_the_dispatchers_latest_queue_line_is_kept() -> None:
    lines = [
        (0, at(0), "Queued: position 3 of 4; waiting for a free build slot"),
        (1, at(5), "Queued: position 1 of 4; waiting for a free build slot"),
    ]
    summary = summarise(lines, created=at(0), concluded=None, status="QUEUED")
    assert summary.queue_note == "position 1 of 4; waiting for a free build slot"
    assert [s.state for s in summary.stages] == ["current", "pending", "pending", "pending"]
