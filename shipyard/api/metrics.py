"""``GET /metrics`` for Prometheus: build counts by status and the queue's age, read from the
database at scrape time (the build table is the truth, whichever process ran the builds)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.deps import State
from shipyard.builds.status import BuildStatus
from shipyard.store.models import Build

router = APIRouter(tags=["metrics"])


class BuildCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._sessions() as session:
            rows = session.execute(select(Build.status, func.count()).group_by(Build.status))
            counts = {str(status): int(count) for status, count in rows}
            oldest = session.scalar(
                select(func.min(Build.created_at)).where(Build.status == BuildStatus.QUEUED)
            )
        by_status = GaugeMetricFamily("shipyard_builds", "Builds by status", labels=["status"])
        for status in BuildStatus:
            by_status.add_metric([status.value], float(counts.get(status.value, 0)))
        yield by_status
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily(
            "shipyard_queue_oldest_age_seconds", "Age of the oldest QUEUED build", value=age
        )


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    registry = CollectorRegistry()
    registry.register(BuildCollector(state.sessions))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
