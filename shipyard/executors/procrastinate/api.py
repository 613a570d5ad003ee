"""The API's side of scale-out (``SHIPYARD_EXECUTOR=procrastinate``): it runs no builds.

``submit`` does nothing: the build's doorbell was deferred in the transaction that inserted
the row (``jobs.install_enqueue_hook``). ``abort`` publishes the build id on
``shipyard_abort``; the worker running the build hears it (``abort_listener``), and the
heartbeat's abort flag is the fallback. With ``--with-worker`` a worker runs in this
process too. The embedded registry (no ``SHIPYARD_REGISTRY``) runs here: workers on this
machine push to it.
"""

from __future__ import annotations

import logging

import psycopg
from sqlalchemy.orm import Session, sessionmaker

from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.abort_listener import CHANNEL
from shipyard.executors.procrastinate.worker import Worker
from shipyard.health import checks
from shipyard.health.checks import Check
from shipyard.monitoring.worker import WorkerMetrics
from shipyard.pipeline.registry import EmbeddedRegistry
from shipyard.registryauth import token_auth
from shipyard.settings import Settings
from shipyard.store.crypto import SecretBox

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
                settings.data_dir, settings.registry_port, auth=token_auth(settings)
            )

    @property
    def metrics(self) -> WorkerMetrics | None:
        """The in-process worker's (``--with-worker``), added to the API's /metrics."""
        return self.worker.runtime.metrics if self.worker is not None else None

    def submit(self, build_id: str) -> None:
        return None  # the doorbell was committed with the row

    def abort(self, build_id: str) -> None:
        # The flag is committed already (the heartbeat would carry it within a few seconds);
        # the notification makes it immediate.
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, build_id))
        except psycopg.Error:
            log.warning("could not publish the abort of %s", build_id, exc_info=True)

    def prepare(self, project_id: str) -> None:
        return None  # each worker prepares a project's sandbox on its first build of it

    def start(self) -> None:
        if self.embedded is not None:
            self.embedded.start()
        if self.worker is not None:
            self.worker.start()

    def drain(self, grace_s: float) -> None:
        if self.worker is not None:
            self.worker.drain(grace_s)

    def stop(self) -> None:
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
