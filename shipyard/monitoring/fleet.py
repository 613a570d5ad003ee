"""The whole fleet as the database says, read at scrape time (the API's ``/metrics``): queue
depth per project, running builds per worker, each running build's heartbeat age, and each
registered worker's liveness. Any API process gives the same answer, whichever workers ran
the builds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.status import RUNNING, BuildStatus
from shipyard.store import worker_status
from shipyard.store import workers as worker_store
from shipyard.store.builds import now
from shipyard.store.models import Build, Workload


class FleetCollector(Collector):
    def __init__(
        self, sessions: sessionmaker[Session], lease: timedelta, detail: bool = True
    ) -> None:
        self._sessions = sessions
        self._lease = lease
        # False (an anonymous scrape): aggregates only, no project, build, worker or host name.
        self._detail = detail

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self._detail:
            yield from self._aggregates()
            return
        with self._sessions() as session:
            depth = session.execute(
                select(Workload.project_id, func.count())
                .join(Build, Build.workload_id == Workload.id)
                .where(Build.status == BuildStatus.QUEUED, Build.concluded.is_(False))
                .group_by(Workload.project_id)
            ).all()
            held = session.execute(
                select(Build.id, Build.worker_id, Build.heartbeat_at).where(
                    Build.status.in_([s.value for s in RUNNING]), Build.concluded.is_(False)
                )
            ).all()
            workers = worker_store.listed(session)
        at = now()

        queue = GaugeMetricFamily(
            "shipyard_queue_depth", "QUEUED builds per project", labels=["project"]
        )
        for project, count in sorted(depth):
            queue.add_metric([project], float(count))
        yield queue

        per_worker: dict[str, int] = {w.id: 0 for w in workers}
        beats = GaugeMetricFamily(
            "shipyard_build_heartbeat_age_seconds",
            "Seconds since each running build's lease was renewed (the lease is SHIPYARD_LEASE_S)",
            labels=["build_id", "worker"],
        )
        for build_id, worker_id, heartbeat_at in held:
            worker = worker_id or ""
            per_worker[worker] = per_worker.get(worker, 0) + 1
            if heartbeat_at is not None:
                beats.add_metric([build_id, worker], max(0.0, (at - heartbeat_at).total_seconds()))
        running = GaugeMetricFamily(
            "shipyard_worker_running_builds",
            "Builds each worker holds now (from the build rows)",
            labels=["worker"],
        )
        for worker, count in sorted(per_worker.items()):
            running.add_metric([worker], float(count))
        yield running
        yield beats

        up = GaugeMetricFamily(
            "shipyard_worker_up",
            "1 when the worker renewed its heartbeat within the lease, else 0",
            labels=["worker", "hostname"],
        )
        age = GaugeMetricFamily(
            "shipyard_worker_heartbeat_age_seconds",
            "Seconds since each registered worker's last heartbeat",
            labels=["worker"],
        )
        slots = GaugeMetricFamily(
            "shipyard_worker_slots", "Builds each worker may run at once", labels=["worker"]
        )
        for w in workers:
            up.add_metric(
                [w.id, w.hostname], 1.0 if worker_status.alive(w, self._lease, at) else 0.0
            )
            age.add_metric([w.id], max(0.0, (at - w.last_heartbeat_at).total_seconds()))
            slots.add_metric([w.id], float(w.concurrency))
        yield up
        yield age
        yield slots

    def _aggregates(self) -> Iterator[GaugeMetricFamily]:
        with self._sessions() as session:
            workers = worker_store.listed(session)
        at = now()
        alive = sum(1 for w in workers if worker_status.alive(w, self._lease, at))
        family = GaugeMetricFamily(
            "shipyard_workers", "Registered workers by liveness", labels=["state"]
        )
        family.add_metric(["up"], float(alive))
        family.add_metric(["down"], float(len(workers) - alive))
        yield family
