"""``GET /metrics`` for Prometheus: build counts by status and the queue's age, read from the
database at scrape time (the build table is the truth, whichever process ran the builds)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.auth import bearer, is_admin_token
from shipyard.api.deps import AppState, State
from shipyard.builds.errors import Unauthenticated
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


def check_scraper(authorization: str | None, state: AppState) -> None:
    """Open unless ``SHIPYARD_METRICS_TOKEN`` is set (build counts say little, but an operator
    may not want them public); then that token or the admin token is required."""
    required = state.settings.metrics_token
    if required is None:
        return
    token = bearer(authorization)
    if token is None:
        raise Unauthenticated("metrics need a bearer token (Authorization: Bearer <token>)")
    # Constant-time comparisons, both always made: timing says nothing about either token.
    metrics_ok = hmac.compare_digest(token.encode(), required.get_secret_value().encode())
    admin_ok = is_admin_token(token, state.admin_token)
    if not (metrics_ok or admin_ok):
        raise Unauthenticated("unknown metrics token")


@router.get("/metrics", include_in_schema=False)
def metrics(state: State, authorization: Annotated[str | None, Header()] = None) -> Response:
    check_scraper(authorization, state)
    registry = CollectorRegistry()
    registry.register(BuildCollector(state.sessions))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
