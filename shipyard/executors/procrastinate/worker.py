"""A scale-out build worker (``shipyard worker``, or ``shipyard up --with-worker``).

The local executor's machinery (claim, fenced writes, heartbeat, process group per build)
with three differences: it learns of work from procrastinate doorbells (and a slow poll), a
run it cannot finish is handed back to the queue instead of ending ``CRASHED`` (SIGTERM,
watchdog), and the fleet-wide lease sweep re-queues what a vanished worker held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from procrastinate import App
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.fairness import QUEUED_PREFIX
from shipyard.builds.status import BuildStatus
from shipyard.executors.local import LocalExecutor, _pid_alive, _Running
from shipyard.executors.procrastinate import jobs
from shipyard.executors.procrastinate.abort_listener import RELEASE, RESET_CACHE, AbortListener
from shipyard.executors.procrastinate.push_gate import FleetPushGate
from shipyard.executors.procrastinate.sweep import Sweeper, SweepReport, settle_lost
from shipyard.executors.runtime import LocalRuntime
from shipyard.monitoring.worker import MetricsServer, serve_worker_metrics
from shipyard.settings import Settings
from shipyard.store import builds as build_store
from shipyard.store import queue
from shipyard.store import workers as worker_store
from shipyard.store.crypto import SecretBox

log = logging.getLogger(__name__)

HANDBACK = "handback"
RESTART_MESSAGE = "its worker was restarted while the build was running"
# The doorbell is the fast path; this poll only catches builds whose doorbell went to a
# worker without a free slot (the sweep re-rings those too).
POLL_S = 2.0


class WorkerExecutor(LocalExecutor):
    dispatch_poll_s = POLL_S

    def __init__(
        self,
        *args: Any,
        app: App,
        instance_id: str,
        max_attempts: int,
        watchdog_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._app = app
        self._max_attempts = max_attempts
        self._watchdog_s = watchdog_s
        # worker:<host>:<pid>:<instance>: the pid tells a dead process from a live one on
        # this host; the instance (its data dir) tells its own builds from another worker's.
        self.worker_prefix = f"worker:{socket.gethostname()}:"
        self.instance_id = instance_id
        self.worker_id = f"{self.worker_prefix}{os.getpid()}:{instance_id}"
        self._claiming = threading.Lock()
        self._last_beat: dict[tuple[str, int], float] = {}

    # --- how work arrives ---------------------------------------------------------------

    def ring(self, build_id: str) -> None:
        """A doorbell: run a dispatch pass now (the row and the limits decide what starts)."""
        if self._draining.is_set() or not self.started:
            return
        try:
            self._fill_slots()
        except Exception:  # the job still succeeds: the poll and the sweep's reconciler retry
            log.exception("dispatch for %s failed", build_id)

    def _fill_slots(self) -> None:
        # The poll thread and doorbells both dispatch: one pass at a time, or two passes
        # would each see the same free slot.
        with self._claiming:
            super()._fill_slots()

    # --- recovery, leases, watchdog -----------------------------------------------------

    def _recover(self) -> None:
        """What an earlier process of this worker (same data dir, dead pid) held is
        re-queued (or ends CRASHED past the attempt cap) at once, not after its lease."""
        report = SweepReport()
        with self._sessions() as session:
            for build in build_store.running_held_by(session, self.worker_prefix):
                held_by = build.worker_id or ""
                if held_by == self.worker_id or not held_by.endswith(f":{self.instance_id}"):
                    continue
                if _pid_alive(held_by):
                    continue
                settle_lost(
                    session,
                    self._app,
                    build,
                    max_attempts=self._max_attempts,
                    why=RESTART_MESSAGE,
                    report=report,
                )
            for worker in worker_store.listed(session):
                ours = worker.id.startswith(self.worker_prefix) and worker.id.endswith(
                    f":{self.instance_id}"
                )
                if ours and worker.id != self.worker_id and not _pid_alive(worker.id):
                    worker_store.unregister(session, worker.id)
            session.commit()
        if report.requeued or report.crashed:
            log.warning("recovered: re-queued %s, crashed %s", report.requeued, report.crashed)

    def _sweep_leases(self) -> None:
        """The fleet's sweep (``Sweeper``) replaces the local executor's: it re-queues."""

    def _heartbeat(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            with self._lock:
                runs = list(self._running.values())
            for run in runs:
                key = (run.build_id, run.attempt)
                self._last_beat.setdefault(key, time.monotonic())
                if not run.alive:
                    continue  # let the lease run out: nothing shows this build progressing
                try:
                    with self._sessions() as session:
                        abort = build_store.heartbeat(session, run.build_id, run.attempt)
                        session.commit()
                except Exception:
                    log.warning("heartbeat failed for %s", run.build_id, exc_info=True)
                    self._watchdog(run, key)
                    continue
                self._last_beat[key] = time.monotonic()
                if abort is None or abort:
                    run.cancel.set()
            live = {(r.build_id, r.attempt) for r in runs}
            for gone in set(self._last_beat) - live:
                del self._last_beat[gone]
            self._beat_worker()

    def _watchdog(self, run: _Running, key: tuple[str, int]) -> None:
        """No heartbeat for ``watchdog_s``: the lease will run out and the sweep re-queue
        the build, so stop ours first — two runs of one build must not overlap."""
        if time.monotonic() - self._last_beat[key] < self._watchdog_s:
            return
        if not run.cancel.is_set():
            log.error("no heartbeat of %s for %g s: stopping it", run.build_id, self._watchdog_s)
            if run.reason != "failure":
                run.reason = HANDBACK
            run.cancel.set()

    # --- ending a run -------------------------------------------------------------------

    def drain(self, grace_s: float, stop_timeout_s: float = 60.0) -> None:
        """Claim nothing more; runs still going after ``grace_s`` are handed back."""
        self._draining.set()
        deadline = time.monotonic() + grace_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self._lock:
            for run in self._running.values():
                if run.reason != "failure":
                    run.reason = HANDBACK
        super().drain(0.0, stop_timeout_s)

    @staticmethod
    def _stopped(run: _Running) -> tuple[BuildStatus, str]:
        if run.reason in (HANDBACK, "shutdown"):
            return BuildStatus.QUEUED, "handed back to the queue (its worker stopped)"
        return LocalExecutor._stopped(run)

    def _conclude(self, run: _Running, status: BuildStatus, message: str, **values: object) -> None:
        if status is not BuildStatus.QUEUED:
            super()._conclude(run, status, message, **values)
            return
        try:
            with self._sessions() as session:
                if build_store.hand_back(session, run.build_id, run.attempt):
                    queue.append_notice(
                        session,
                        run.build_id,
                        f"{QUEUED_PREFIX}attempt {run.attempt} was handed back by "
                        f"{self.worker_id}; waiting for another worker",
                    )
                    jobs.defer(self._app, session, run.build_id)
                session.commit()
        except Exception:  # the lease sweep re-queues it instead
            log.exception("could not hand back %s", run.build_id)


class JobLoop:
    """procrastinate's worker in an asyncio loop of its own thread: it takes doorbells
    (LISTEN/NOTIFY wakes it within milliseconds) and hands each to the executor."""

    def __init__(self, app: App, name: str) -> None:
        self._app = app
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="shipyard-jobs", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:
            log.exception("the procrastinate worker stopped")

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._app.open_async():
            task = asyncio.create_task(
                self._app.run_worker_async(
                    queues=[jobs.QUEUE],
                    name=self._name,
                    # Doorbells are short (one dispatch pass); builds run in their own threads.
                    concurrency=2,
                    install_signal_handlers=False,
                    delete_jobs="successful",
                    listen_notify=True,
                    fetch_job_polling_interval=5.0,
                )
            )
            self.ready.set()
            await self._stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: stopped already
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)


def check_worker_settings(settings: Settings) -> None:
    """Refuse what cannot work, with the reason (before anything starts)."""
    jobs.conninfo(settings.resolved_database_url)  # raises NotPostgres on SQLite


class Worker:
    """Everything one worker process runs: the build runtime (pipeline, sandbox, executor),
    procrastinate's job loop, the abort listener, the lease sweep and its /metrics."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        box: SecretBox,
        *,
        concurrency: int,
        metrics_port: int | None = None,
        serve_registry: bool = False,
    ) -> None:
        check_worker_settings(settings)
        url = settings.resolved_database_url
        self.settings = settings
        self._metrics_port = metrics_port
        self._metrics_server: MetricsServer | None = None
        holder: list[WorkerExecutor] = []
        self.app = jobs.make_app(url, ring=lambda build_id: holder[0].ring(build_id))
        # Doorbells this worker rings (hand-back, sweep) go on its own transactions.
        self.doorbells = jobs.make_app(url)

        def make_executor(*args: Any, **kwargs: Any) -> WorkerExecutor:
            kwargs["concurrency"] = concurrency
            made = WorkerExecutor(
                *args,
                app=self.doorbells,
                instance_id=settings.instance_id,
                max_attempts=settings.build_max_attempts,
                watchdog_s=settings.worker_watchdog_s,
                **kwargs,
            )
            holder.append(made)
            return made

        self.runtime = LocalRuntime(
            settings,
            sessions,
            box,
            make_executor=make_executor,
            serve_registry=serve_registry,
            # Pushes from every machine wait for the registry's collection (wherever it runs).
            push_gate=FleetPushGate(jobs.conninfo(url)),
        )
        self.executor = holder[0]
        self.jobs = JobLoop(self.app, self.executor.worker_id)
        sandbox = self.runtime.sandbox
        self.abort_listener = AbortListener(
            jobs.conninfo(url),
            self.executor.abort,
            # The API drops the registry cache itself; each worker drops its own store.
            {RESET_CACHE: sandbox.reset_cache, RELEASE: sandbox.release},
        )
        self.sweeper = Sweeper(
            self.runtime.worker_sessions,
            self.doorbells,
            interval_s=settings.worker_sweep_s,
            lease=timedelta(seconds=settings.lease_s),
            max_attempts=settings.build_max_attempts,
        )

    @property
    def worker_id(self) -> str:
        return self.executor.worker_id

    def start(self) -> None:
        jobs.apply_schema(self.settings.resolved_database_url)
        if self._metrics_port is not None:
            self._metrics_server = serve_worker_metrics(self._metrics_port, self.runtime.metrics)
        self.abort_listener.start()
        self.runtime.start()
        self.sweeper.start()
        self.jobs.start()

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server else None

    def drain(self, grace_s: float) -> None:
        self.jobs.stop()  # no more doorbells taken here; the others' workers take them
        self.runtime.drain(grace_s)

    def stop(self) -> None:
        self.jobs.stop()
        self.sweeper.stop()
        self.runtime.stop()
        self.abort_listener.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
