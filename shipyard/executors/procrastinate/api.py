"""The API's side of scale-out (``SHIPYARD_EXECUTOR=procrastinate``): it runs no builds.

``submit`` does nothing: the build's doorbell was deferred in the transaction that inserted
the row (``jobs.install_enqueue_hook``). ``abort`` has nothing to send: the store published
the build id on ``shipyard_abort`` when the flag was committed; the worker running the build
hears it (``abort_listener``), and the heartbeat's abort flag is the fallback. With
``--with-worker`` a worker runs in this process too. The embedded registry (no
``SHIPYARD_REGISTRY``) runs here: workers on this machine push to it.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.orm import Session, sessionmaker

from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.abort_listener import (
    RELEASE,
    RESET_CACHE,
    publish,
)
from shipyard.executors.procrastinate.push_gate import FleetPushGate
from shipyard.executors.procrastinate.worker import Worker
from shipyard.executors.runtime import garbage_collector, log_retention, log_retention_schedule
from shipyard.gc.collector import Report, Schedule
from shipyard.gc.retention import Policy
from shipyard.health import checks
from shipyard.health.checks import Check
from shipyard.monitoring.worker import WorkerMetrics
from shipyard.pipeline import build_cache
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.registryauth import token_auth
from shipyard.registryauth.targets import own_target
from shipyard.settings import Settings
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Workload

log = logging.getLogger(__name__)


class ProcrastinateApi:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        box: SecretBox,
        *,
        with_worker: bool = False,
        worker_concurrency: int | None = None,
    ) -> None:
        self._url = settings.resolved_database_url
        self._conninfo = jobs.conninfo(self._url)  # refuses SQLite, clearly
        # Before anything defers: the hook's INSERT needs procrastinate's tables.
        jobs.apply_schema(self._url)
        self.app = jobs.make_app(self._url)
        jobs.install_enqueue_hook(sessions, self.app)
        self.worker: Worker | None = None
        self.embedded: EmbeddedRegistry | None = None
        if with_worker:
            # Its runtime owns the embedded registry, as ``shipyard up`` does with builds.
            self.worker = Worker(
                settings,
                sessions,
                box,
                concurrency=worker_concurrency or settings.max_concurrent_builds,
                serve_registry=True,
            )
        elif not settings.registry:
            self.embedded = EmbeddedRegistry(
                settings.data_dir,
                settings.registry_port,
                auth=token_auth(settings),
                listen=settings.registry_listen,
            )
        self._sessions = sessions
        self._cache = build_cache.configured(
            settings.build_cache_registry, settings.executor, settings.build_cache_repository
        )
        self._registry = registry_target(settings, self.embedded)
        # Without a worker in this process (whose runtime does both), the registry's
        # collection and log retention run here; every worker's pushes wait for the first
        # (the fleet's push gate), and each worker prunes its own stores.
        retention = log_retention(sessions, settings)
        self.collector = garbage_collector(
            settings, sessions, None,
            gate=FleetPushGate(self._conninfo), registry=self._registry,
            embedded=self.embedded, retention=retention, layer_cache=self._cache,
        )  # fmt: skip
        own = settings if self.worker is None else None
        self._gc_schedule = Schedule(self.collector.run, own.gc_interval_s if own else 0)
        self._log_schedule = log_retention_schedule(retention, own)

    @property
    def metrics(self) -> WorkerMetrics | None:
        """The in-process worker's (``--with-worker``), added to the API's /metrics."""
        return self.worker.runtime.metrics if self.worker is not None else None

    def collect_garbage(self, dry_run: bool, policy: Policy | None = None) -> Report:
        """``POST /v1/gc``: the in-process worker's runtime collects (and prunes its own
        stores), or this process does the registry's part (``collector``)."""
        if self.worker is not None:
            return self.worker.runtime.collect_garbage(dry_run, policy)
        return self.collector.run(dry_run=dry_run, policy=policy)

    def submit(self, build_id: str) -> None:
        return None  # the doorbell was committed with the row

    def abort(self, build_id: str) -> None:
        # ``store.builds.request_abort`` sent ``shipyard_abort`` with the flag's commit; the
        # worker running the build (an in-process one too) hears it; the heartbeat's flag
        # is the fallback.
        return None

    def prepare(self, project_id: str) -> None:
        return None  # each worker prepares a project's sandbox on its first build of it

    def release(self, project_id: str) -> None:
        """A deleted project: every worker frees its sandbox of it (user, disk, store)."""
        self._publish(RELEASE, project_id)

    def reset_cache(self, project_id: str, workload_id: int) -> None:
        """Every worker empties its layer store of the project; the registry cache of the
        workload is dropped here (the in-process worker's runtime does both for itself)."""
        self._publish(RESET_CACHE, project_id)
        if self.worker is not None:
            self.worker.runtime.reset_cache(project_id, workload_id)
        else:
            threading.Thread(
                target=self._drop_registry_cache,
                args=(project_id, workload_id),
                name=f"reset-registry-cache-{project_id}",
                daemon=True,
            ).start()

    def _drop_registry_cache(self, project_id: str, workload_id: int) -> None:
        """Or a fresh worker would bring every layer back from the registry."""
        if self._cache is None or self._registry is None or self._registry.username is None:
            return
        try:
            with self._sessions() as session:
                workload = session.get(Workload, workload_id)
                slug = workload.slug if workload is not None else None
            if slug is None:
                return
            repository = self._registry.repository(project_id, self._cache.name(slug))
            gone = build_cache.drop(self._registry, repository)
            log.info("dropped %d entries of the registry build cache %s", gone, repository)
        except Exception:  # a failed clean-up must not take the server down
            log.exception("dropping the registry cache of workload %s failed", workload_id)

    def _publish(self, channel: str, payload: str) -> None:
        try:
            publish(self._conninfo, channel, payload)
        except psycopg.Error:
            log.warning("could not publish %s %s", channel, payload, exc_info=True)

    def start(self) -> None:
        if self.embedded is not None:
            self.embedded.start()
        if self.worker is not None:
            self.worker.start()
        self._gc_schedule.start()
        self._log_schedule.start()

    def drain(self, grace_s: float) -> None:
        if self.worker is not None:
            self.worker.drain(grace_s)

    def stop(self) -> None:
        self._gc_schedule.stop()
        self._log_schedule.stop()
        if self.worker is not None:
            self.worker.stop()
        if self.embedded is not None:
            self.embedded.stop()

    def health(self) -> list[Check]:
        if self.worker is not None:
            return self.worker.runtime.health()
        if self.embedded is not None:
            return [checks.registry_answering(self.embedded, self.embedded.target)]
        return []


def registry_target(settings: Settings, embedded: EmbeddedRegistry | None) -> RegistryTarget | None:
    """Shipyard's own identity at the registry (as ``LocalRuntime`` has it)."""
    return own_target(settings, embedded)
