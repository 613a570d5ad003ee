"""The lease sweep of the scale-out fleet: every worker runs it every
``SHIPYARD_WORKER_SWEEP_S``; a PostgreSQL advisory lock lets one at a time do the work.

A build whose lease ran out (its worker was killed, lost its network or hangs) is re-queued
while it has run fewer than ``SHIPYARD_BUILD_MAX_ATTEMPTS`` times, else it ends ``CRASHED``.
Re-queueing is safe because every write of the lost run is fenced by its attempt and by
``status <> QUEUED`` (a run that comes back changes nothing), and the image a retry pushes is
addressed by digest. The cap stops a build that kills its worker from taking down the fleet
one worker at a time.

The sweep also reconciles: a QUEUED build without a waiting doorbell gets one (its doorbell
went to a worker that had no free slot, a worker died while answering it — procrastinate
leaves that job ``doing`` — or it was lost with a database restore).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from procrastinate import App
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.fairness import QUEUED_PREFIX
from shipyard.builds.status import BuildStatus
from shipyard.executors.procrastinate import jobs
from shipyard.store import builds as build_store
from shipyard.store import queue
from shipyard.store import workers as worker_store
from shipyard.store.models import Build

log = logging.getLogger(__name__)

SWEEP_LOCK = 0x5348_4950_5357_4550  # "SHIPSWEP"
LEASE_MESSAGE = "the worker running this build stopped responding (lease expired)"
# Doorbells re-rung per sweep at most (the oldest queued builds first).
RECONCILE_LIMIT = 100
WORKER_ROW_KEPT = timedelta(days=1)

_ORPHANS = text(
    """
    SELECT b.id FROM builds b
    WHERE b.status = 'QUEUED' AND NOT b.concluded AND NOT b.abort_requested
      AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j
        WHERE j.queueing_lock = b.id AND j.status = 'todo'
      )
    ORDER BY b.created_at, b.id
    LIMIT :limit
    """
)

# Doorbells carry no state, so finished ones that procrastinate keeps (failed, cancelled) and
# ones left ``doing`` by a worker procrastinate has since pruned (worker_id set NULL) are
# deleted: the table stays the size of the live queue. The reconciler re-rings their builds.
_STALE_DOORBELLS = text(
    """
    DELETE FROM procrastinate_jobs
    WHERE task_name = :task
      AND (status IN ('failed', 'cancelled', 'aborted', 'succeeded')
           OR (status = 'doing' AND worker_id IS NULL))
    """
)


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    rung: list[str] = field(default_factory=list)
    pruned_doorbells: int = 0


def settle_lost(
    session: Session,
    app: App,
    build: Build,
    *,
    max_attempts: int,
    why: str,
    report: SweepReport,
) -> None:
    """A run that will never finish (its worker is gone): re-queue it or end it."""
    if build.abort_requested:
        if build_store.conclude(
            session, build.id, build.attempt, BuildStatus.ABORTED, f"Build aborted ({why})"
        ):
            report.aborted.append(build.id)
        return
    if build.attempt < max_attempts:
        if build_store.hand_back(session, build.id, build.attempt):
            queue.append_notice(
                session,
                build.id,
                f"{QUEUED_PREFIX}attempt {build.attempt} was lost ({why}); re-queued for "
                f"attempt {build.attempt + 1} of {max_attempts}",
            )
            jobs.defer(app, session, build.id)
            report.requeued.append(build.id)
        return
    message = f"{why}; gave up after {build.attempt} attempts (SHIPYARD_BUILD_MAX_ATTEMPTS)"
    if build_store.conclude(session, build.id, build.attempt, BuildStatus.CRASHED, message):
        report.crashed.append(build.id)


def sweep_once(
    sessions: sessionmaker[Session], app: App, *, lease: timedelta, max_attempts: int
) -> SweepReport | None:
    """One sweep, or None when another worker is sweeping right now."""
    report = SweepReport()
    with sessions() as session:
        locked = session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK})
        if not locked:
            return None
        for build in build_store.expired_leases(session, lease):
            settle_lost(
                session, app, build, max_attempts=max_attempts, why=LEASE_MESSAGE, report=report
            )
        pruned = session.execute(_STALE_DOORBELLS, {"task": jobs.TASK})
        report.pruned_doorbells = int(pruned.rowcount)  # type: ignore[attr-defined]
        for (build_id,) in session.execute(_ORPHANS, {"limit": RECONCILE_LIMIT}):
            if jobs.defer(app, session, build_id):
                report.rung.append(build_id)
        worker_store.prune(session, WORKER_ROW_KEPT)
        session.commit()
    if report.requeued or report.crashed or report.aborted:
        log.warning(
            "lease sweep: re-queued %s, crashed %s, aborted %s",
            report.requeued,
            report.crashed,
            report.aborted,
        )
    return report


class Sweeper:
    """``sweep_once`` every ``interval_s`` in a daemon thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        app: App,
        *,
        interval_s: float,
        lease: timedelta,
        max_attempts: int,
    ) -> None:
        self._sessions = sessions
        self._app = app
        self._interval_s = interval_s
        self._lease = lease
        self._max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipyard-sweep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                sweep_once(
                    self._sessions, self._app, lease=self._lease, max_attempts=self._max_attempts
                )
            except Exception:  # the next sweep tries again; a DB hiccup must not end it
                log.exception("lease sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
