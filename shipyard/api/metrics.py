"""``GET /metrics`` for Prometheus: build counts by status and the queue's age, read from the
database at scrape time (the build table is the truth, whichever process ran the builds), the
fleet's queue depth, workers and heartbeats (``shipyard.monitoring.fleet``), disk use
(``shipyard_disk_bytes``), and, when this process runs builds (the local executor), its
worker histograms (``shipyard.monitoring.worker``)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.auth import bearer, is_admin_token
from shipyard.api.deps import AppState, State
from shipyard.builds.errors import Unauthenticated
from shipyard.builds.status import BuildStatus
from shipyard.gc.disk import Cached, store_dirs, total, usage
from shipyard.monitoring.fleet import FleetCollector
from shipyard.monitoring.worker import WorkerMetrics
from shipyard.sandbox.sandbox import default_root
from shipyard.store import logs as log_store
from shipyard.store.models import Build
from shipyard.webhooks.counters import Rejections

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


class DiskCollector(Collector):
    """Disk use of the layer stores, the embedded registry and the build logs (measured at
    most once a minute: ``du`` over large stores takes a while)."""

    def __init__(self, usage: Cached) -> None:
        self._usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "shipyard_disk_bytes",
            "Disk use by part: stores (projects' buildah stores), base_images, registry "
            "(embedded registry storage), logs (build log text in the database)",
            labels=["part"],
        )
        for part, value in sorted(self._usage.get().items()):
            family.add_metric([part], value)
        yield family


class WebhookRejectionCollector(Collector):
    """Webhook deliveries refused with 401 (nothing else of them is recorded). The reason
    (``unknown-project`` / ``no-secret`` / …) is detail: anonymously it would tell whoever
    sends a delivery to a guessed project id whether that project exists."""

    def __init__(self, counts: Rejections | None, detail: bool = True) -> None:
        self._counts = counts
        self._detail = detail

    def collect(self) -> Iterator[CounterMetricFamily]:
        snapshot = (self._counts or Rejections()).snapshot()
        if not self._detail:
            family = CounterMetricFamily(
                "shipyard_webhook_rejected",
                "Webhook deliveries refused (401) by provider",
                labels=["provider"],
            )
            by_provider: dict[str, float] = {}
            for (provider, _), value in snapshot.items():
                by_provider[provider] = by_provider.get(provider, 0.0) + value
            for provider, total in sorted(by_provider.items()):
                family.add_metric([provider], total)
            yield family
            return
        family = CounterMetricFamily(
            "shipyard_webhook_rejected",
            "Webhook deliveries refused (401) by provider and reason",
            labels=["provider", "reason"],
        )
        for (provider, reason), value in sorted(snapshot.items()):
            family.add_metric([provider, reason], value)
        yield family


def disk_usage(request: Request, state: AppState) -> Cached:
    """The app's one cache of disk measurements (made at the first scrape)."""
    cached: Cached | None = getattr(request.app.state, "disk_usage", None)
    if cached is None:
        settings, sessions = state.settings, state.sessions

        def measure() -> dict[str, float]:
            root = settings.sandbox_dir or default_root(settings.instance_id)
            base = settings.base_images_dir or settings.data_dir / "base-images"
            values: dict[str, float] = {
                "stores": float(total(store_dirs(root))),
                "base_images": float(usage(base)),
                "logs": float(log_store.text_bytes(sessions)),
            }
            if not settings.registry:
                values["registry"] = float(usage(settings.data_dir / "registry"))
            return values

        cached = request.app.state.disk_usage = Cached(measure)
    return cached


def check_scraper(authorization: str | None, state: AppState) -> bool:
    """Whether the scraper may see the detailed metrics (per project, build, worker, host).

    Without ``SHIPYARD_METRICS_TOKEN`` an anonymous scrape gets aggregates only (build counts
    by status, queue age, disk, webhook refusals, workers up/down); the admin token sees the
    detail. With it set, that token or the admin token is required (401 otherwise) and both
    see the detail."""
    required = state.settings.metrics_token
    token = bearer(authorization)
    if token is None:
        if required is None:
            return False
        raise Unauthenticated("metrics need a bearer token (Authorization: Bearer <token>)")
    # Constant-time comparisons, both always made: timing says nothing about either token.
    expected = required.get_secret_value() if required is not None else ""
    metrics_ok = required is not None and hmac.compare_digest(token.encode(), expected.encode())
    admin_ok = is_admin_token(token, state.admin_token)
    if metrics_ok or admin_ok:
        return True
    if required is None:
        return False  # any other token (a project's): what anyone may see
    raise Unauthenticated("unknown metrics token")


@router.get("/metrics", include_in_schema=False)
def metrics(
    request: Request, state: State, authorization: Annotated[str | None, Header()] = None
) -> Response:
    detail = check_scraper(authorization, state)
    registry = CollectorRegistry()
    registry.register(BuildCollector(state.sessions))
    registry.register(DiskCollector(disk_usage(request, state)))
    registry.register(
        WebhookRejectionCollector(
            getattr(request.app.state, "webhook_rejections", None), detail=detail
        )
    )
    lease = timedelta(seconds=state.settings.lease_s)
    registry.register(FleetCollector(state.sessions, lease, detail=detail))
    worker = getattr(state.executor, "metrics", None)
    if detail and isinstance(worker, WorkerMetrics):
        registry.register(worker)
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
