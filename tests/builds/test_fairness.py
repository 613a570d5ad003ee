"""The dispatch policy alone: round robin across projects, the three limits, the reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.builds.fairness import Limits, Running, Waiting, order, plan, waits_on

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def queued(build_id: str, project: str, service: int, minute: int) -> Waiting:
    return Waiting(
        build_id, project, service, f"svc{service}", "service", T0 + timedelta(minutes=minute)
    )


def test_round_robin_by_fewest_running_then_oldest_waiting() -> None:
    waiting = [queued(f"a{i}", "A", i, i) for i in range(1, 5)] + [queued("b1", "B", 9, 10)]
    # Nothing running: A's oldest first, then B (A has one "started" in the simulation).
    assert [b.build_id for b in order(waiting, [])] == ["a1", "b1", "a2", "a3", "a4"]
    # A already runs two: B goes first although it queued last.
    running = [Running("r1", "A", 5), Running("r2", "A", 6)]
    assert [b.build_id for b in order(waiting, running)] == ["b1", "a1", "a2", "a3", "a4"]


def test_global_project_and_service_limits_and_reasons() -> None:
    limits = Limits(global_max=3, project_max=2, service_max=1)
    running = [Running("ra", "A", 1), Running("rb", "A", 2)]
    waiting = [
        queued("a-same-service", "A", 1, 1),
        queued("a-other", "A", 3, 2),
        queued("b1", "B", 7, 3),
        queued("b2", "B", 7, 4),
    ]
    places = {p.build.build_id: p for p in plan(waiting, running, limits)}
    assert places["b1"].position == 1 and places["b1"].total == 4
    assert places["b1"].blocked_by is None
    assert places["a-same-service"].blocked_by == "service svc1 is already building ra"
    assert places["a-other"].blocked_by == "project limit: 2 of 2 builds of project A running"
    # b2 is eligible by the limits now; once b1 runs, its service holds it back.
    assert places["b2"].blocked_by is None
    after = plan(waiting[:2] + waiting[3:], [*running, Running("b1", "B", 7)], limits)
    reasons = {p.build.build_id: p.blocked_by for p in after}
    assert reasons["b2"] == "service svc7 is already building b1"
    assert reasons["a-other"] == "project limit: 2 of 2 builds of project A running"
    full = plan([queued("c1", "C", 8, 5)], [*running, Running("b1", "B", 7)], limits)
    assert full[0].blocked_by == "waiting for a free build slot (3 of 3 running)"
    assert full[0].notice(full[0].blocked_by or "") == (
        "Queued: position 1 of 1; waiting for a free build slot (3 of 3 running)"
    )


def test_no_service_limit_and_no_project_limit() -> None:
    limits = Limits(global_max=10, project_max=None, service_max=0)
    running = [Running(f"r{i}", "A", 1) for i in range(5)]
    assert plan([queued("a", "A", 1, 0)], running, limits)[0].blocked_by is None


def test_limits_are_checked() -> None:
    for bad in ({"global_max": 0}, {"global_max": 1, "project_max": 0},
                {"global_max": 1, "service_max": -1}):  # fmt: skip
        with pytest.raises(ValueError):
            Limits(**bad)  # type: ignore[arg-type]


def test_waits_on_drops_the_details_that_change() -> None:
    assert waits_on("service web is already building a-1") == "service web"
    assert waits_on("job migrate is already building b-2, c-3") == "job migrate"
    assert waits_on("project limit: 2 of 2 builds of project demo running") == "project limit"
    assert waits_on("waiting for a free build slot (2 of 2 running)") == (
        "waiting for a free build slot"
    )
