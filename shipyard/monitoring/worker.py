"""What one worker process measures as it runs builds: build duration and queue wait by
outcome, stage durations, its slots and the age of its last heartbeat.

Histograms live in the process that ran the builds (Prometheus sums them over workers), so
each worker serves ``/metrics`` (``serve_worker_metrics``), and the API's ``/metrics`` adds
the local executor's when it runs builds in-process. Nothing here is registered in
prometheus_client's global registry: one ``WorkerMetrics`` per executor, passed down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Builds take seconds (a reused image) to an hour (the default timeout).
DURATION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
STAGE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class WorkerMetrics(Collector):
    def __init__(self) -> None:
        self.build_duration = Histogram(
            "shipyard_build_duration_seconds",
            "Running time of builds this worker concluded (claim to conclusion), by outcome",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "shipyard_build_queue_wait_seconds",
            "Time builds this worker ran spent QUEUED (creation to claim), by outcome",
            ["outcome"],
            buckets=WAIT_BUCKETS,
            registry=None,
        )
        self.stage_duration = Histogram(
            "shipyard_build_stage_duration_seconds",
            "Time builds spent in each stage (starting, cloning, building, uploading)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=None,
        )
        self._lock = threading.Lock()
        self._worker: Callable[[], str] = str
        self._slots = 0
        self._running: Callable[[], int] = int
        self._last_beat: float | None = None

    def bind(self, worker_id: Callable[[], str], slots: int, running: Callable[[], int]) -> None:
        """The executor this process runs: its id (read at each scrape: a subclass may set
        its own after construction), its slots and a count of its running builds."""
        with self._lock:
            self._worker, self._slots, self._running = worker_id, slots, running

    def heartbeat(self) -> None:
        """The worker renewed its leases (and its worker row) just now."""
        self._last_beat = time.monotonic()

    def concluded(
        self, outcome: str, queued_at: datetime | None, started_at: datetime, ended_at: datetime
    ) -> None:
        self.build_duration.labels(outcome).observe(
            max(0.0, (ended_at - started_at).total_seconds())
        )
        if queued_at is not None:
            wait = (started_at - queued_at).total_seconds()
            self.queue_wait.labels(outcome).observe(max(0.0, wait))

    def stage(self, stage: str, seconds: float) -> None:
        self.stage_duration.labels(stage.lower()).observe(max(0.0, seconds))

    def collect(self) -> Iterator[Metric]:
        yield from self.build_duration.collect()
        yield from self.queue_wait.collect()
        yield from self.stage_duration.collect()
        with self._lock:
            worker_id, slots, running = self._worker, self._slots, self._running
        worker = worker_id()
        if not worker:
            return
        yield _one("shipyard_process_running_builds", "Builds this worker process runs now",
                   worker, float(running()))  # fmt: skip
        yield _one("shipyard_process_build_slots", "Builds this worker process may run at once",
                   worker, float(slots))  # fmt: skip
        beat = self._last_beat
        yield _one(
            "shipyard_process_heartbeat_age_seconds",
            "Seconds since this worker process last renewed its leases (NaN before the first)",
            worker,
            time.monotonic() - beat if beat is not None else float("nan"),
        )

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        registry.register(self)
        return registry


def _one(name: str, documentation: str, worker: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["worker"])
    family.add_metric([worker], value)
    return family


class MetricsServer:
    """A worker's ``/metrics`` HTTP server (prometheus_client's, in a daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_worker_metrics(
    port: int, metrics: WorkerMetrics, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve ``metrics`` on ``http://host:port/metrics`` (any path answers; port 0 picks a
    free port, see ``.port``). Open like the API's ``/metrics`` without
    ``SHIPYARD_METRICS_TOKEN``: bind it to an address only the scraper reaches."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry())
    return MetricsServer(server, thread)
