"""Build metrics in Northflank's shape (js-client ``ApiCallMetricsResponse``):
``{<metricType>: {metricInfo: {metricId, metricUnit}, values: [{metadata: {containerId},
data: [{value, ts}]}]}}``.

What a build row measures: its timings (``buildDuration``, seconds, one point at the end).
CPU and memory come from ``Build.metrics`` when the executor records it (a JSON object
``{"cpu": [[iso_ts, vCPU], …], "memory": [[iso_ts, MB], …]}``); without it their series are
well-formed and empty. The js-client maps every entry's ``values``, so every key present
must have that shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Metric types a build can have, with Northflank's units ("s" is Shipyard's: build time).
UNITS: Mapping[str, str] = {"cpu": "vCPU", "memory": "mb", "buildDuration": "s"}
DEFAULT_TYPES = ("cpu", "memory", "buildDuration")
# Every type the clients may ask for; those a build does not have answer empty.
KNOWN_TYPES = frozenset(
    {
        "cpu",
        "memory",
        "networkIngress",
        "networkEgress",
        "tcpConnectionsOpen",
        "diskUsage",
        "requests",
        "http4xxResponses",
        "http5xxResponses",
        "bandwidth",
        "bandwidthVolume",
        "buildDuration",
    }
)


def _iso(value: datetime) -> str:
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def _points(raw: Any) -> list[tuple[datetime, float]]:
    points: list[tuple[datetime, float]] = []
    if not isinstance(raw, list):
        return points
    for item in raw:
        try:
            ts, value = item
            points.append((datetime.fromisoformat(str(ts).replace("Z", "+00:00")), float(value)))
        except (TypeError, ValueError):
            continue  # a malformed sample is skipped, never a 500
    return points


def series(
    *,
    container_id: str,
    types: Sequence[str],
    recorded: Mapping[str, Any] | None,
    duration_s: float | None,
    ended_at: datetime | None,
    window: tuple[datetime | None, datetime | None],
    single_at: datetime | None,
) -> dict[str, Any]:
    """The response's ``data``. ``window``: a range query's bounds; ``single_at``: a single
    query's instant (the sample at or just before it)."""
    out: dict[str, Any] = {}
    for metric in types:
        if metric == "buildDuration":
            points = [(ended_at, duration_s)] if ended_at and duration_s is not None else []
        else:
            points = _points((recorded or {}).get(metric))
        points = _select(points, window, single_at)
        values = (
            [
                {
                    "metadata": {"containerId": container_id},
                    "data": [{"value": v, "ts": _iso(ts)} for ts, v in points],
                }
            ]
            if points
            else []
        )
        out[metric] = {
            "metricInfo": {"metricId": metric, "metricUnit": UNITS.get(metric, "count")},
            "values": values,
        }
    return out


def _select(
    points: Iterable[tuple[datetime, float]],
    window: tuple[datetime | None, datetime | None],
    single_at: datetime | None,
) -> list[tuple[datetime, float]]:
    ordered = sorted(points)
    if single_at is not None:
        before = [p for p in ordered if p[0] <= single_at]
        return before[-1:] if before else ordered[:1]
    start, end = window
    return [p for p in ordered if (start is None or p[0] >= start) and (end is None or p[0] <= end)]
