"""The embedded executor: a pool of build threads in this process, fed from the build table.

DESIGN.md "Running builds": the row is the queue entry (so nothing is lost between commit and
enqueue), a claim is one conditional UPDATE, every later write is fenced by attempt, a
heartbeat renews the lease and carries abort requests, and builds whose lease ran out end
``CRASHED``. Scale-out swaps only how a worker learns of work (procrastinate), not this.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds import pull_credentials
from shipyard.builds import service as build_service
from shipyard.builds.fairness import Limits
from shipyard.builds.relevant_commit import PathRules
from shipyard.builds.status import BuildStatus
from shipyard.executors.dispatch import Dispatcher
from shipyard.monitoring.worker import WorkerMetrics
from shipyard.pipeline.errors import Cancelled, PipelineError, TimedOut
from shipyard.pipeline.logsink import BuildLog, LogLimits
from shipyard.pipeline.redact import Redactor
from shipyard.pipeline.run import BuildJob, Outcome, Pipeline
from shipyard.sandbox.sandbox import SandboxRequest
from shipyard.store import builds as build_store
from shipyard.store import projects as project_store
from shipyard.store import workers as worker_store
from shipyard.store import workloads as workload_store
from shipyard.store.ballast import Ballast, is_disk_full
from shipyard.store.crypto import NotOurKey, SecretBox

log = logging.getLogger(__name__)

CRASH_MESSAGE = "Shipyard stopped while the build was running; start the build again"
SHUTDOWN_MESSAGE = (
    "Shipyard was stopped while the build was running (it did not finish within "
    "SHIPYARD_SHUTDOWN_GRACE_S); start the build again"
)
WRONG_KEY_MESSAGE = (
    "this worker cannot open the build's sealed settings: its SHIPYARD_SECRET_KEY is not the "
    "API's (copy the secret-key file of the API's data dir)"
)
LEASE_MESSAGE = "the worker running this build stopped responding (lease expired)"
# A worker row not renewed for this long is deleted (until then it lists as not alive).
WORKER_ROW_KEPT = timedelta(days=1)
# How long a build's final status write is retried (the database may be briefly away).
CONCLUDE_RETRY_S = 30.0


@dataclass
class _Running:
    build_id: str
    attempt: int
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = "abort"  # "abort" | "shutdown" | "failure"
    failure: str | None = None  # why the build was stopped when reason is "failure"
    queued_at: datetime | None = None  # the build's creation: its queue wait ends at the claim
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stage: str = BuildStatus.STARTING.value
    stage_since: float = field(default_factory=time.monotonic)
    thread: threading.Thread | None = None
    sink: BuildLog | None = None

    def fail(self, message: str) -> None:
        """Stop the build through the abort path; it ends FAILURE with ``message``."""
        if self.failure is None:
            self.failure, self.reason = message, "failure"
        self.cancel.set()

    @property
    def alive(self) -> bool:
        """The lease proves the pipeline is alive: its thread runs and its log is stored."""
        thread_ok = self.thread is None or self.thread.is_alive()
        return thread_ok and (self.sink is None or self.sink.healthy)

    def enter(self, stage: str) -> tuple[str, float]:
        """Move to ``stage``; returns the stage left and how long it lasted."""
        left, lasted = self.stage, time.monotonic() - self.stage_since
        self.stage, self.stage_since = stage, time.monotonic()
        return left, lasted


class _Reporter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        run: _Running,
        log_sink: BuildLog,
        metrics: WorkerMetrics,
    ) -> None:
        self._sessions = sessions
        self._run = run
        self.line = log_sink
        self._metrics = metrics

    def _write(self, **values: object) -> None:
        with self._sessions() as session:
            if not build_store.fenced_update(
                session, self._run.build_id, self._run.attempt, **values
            ):
                # Concluded or taken over elsewhere: stop doing work nobody will record.
                self._run.cancel.set()
            session.commit()

    def stage(self, status: BuildStatus) -> None:
        self.line(f"==> {status.value.lower()}")
        self._metrics.stage(*self._run.enter(status.value))
        self._write(status=status)

    def metrics(self, samples: Mapping[str, list[tuple[str, float]]]) -> None:
        try:
            self._write(metrics={k: [list(p) for p in v] for k, v in samples.items()})
        except Exception:  # metrics are nice to have; never the reason a build fails
            log.exception("could not store the metrics of %s", self._run.build_id)

    def resolved(self, sha: str | None, branch: str | None) -> None:
        if sha:
            self.line(f"Building commit {sha}" + (f" ({branch})" if branch else ""))
        self._write(sha=sha, branch=branch)


class LocalExecutor:
    # How often the dispatcher looks at the queue without being woken by a submit.
    dispatch_poll_s = 1.0

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        pipeline: Pipeline,
        *,
        concurrency: int,
        heartbeat_s: float,
        lease_s: float,
        limits: Limits | None = None,
        metrics: WorkerMetrics | None = None,
        log_limits: LogLimits | None = None,
        log_fail_after_s: float = 5.0,
        ballast: Ballast | None = None,
    ) -> None:
        self._ballast = ballast or Ballast(None, 0)
        self._log_limits = log_limits
        self._log_fail_after_s = log_fail_after_s
        self._sessions = sessions
        self._box = box
        self._pipeline = pipeline
        self._concurrency = max(1, concurrency)
        # The global limit counts every worker's builds; alone, this pool is the whole fleet.
        self._dispatcher = Dispatcher(sessions, limits or Limits(global_max=self._concurrency))
        self._heartbeat_s = heartbeat_s
        self._lease = timedelta(seconds=lease_s)
        self.worker_prefix = f"local:{socket.gethostname()}:"
        self.worker_id = f"{self.worker_prefix}{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # Draining: claim nothing more. Stopping: the heartbeat ends too — only after the
        # drain, so builds finishing within the shutdown grace keep their lease (and still
        # learn of aborts).
        self._draining = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.metrics = metrics or WorkerMetrics()
        self.metrics.bind(lambda: self.worker_id, self._concurrency, lambda: len(self.running()))

    # --- Executor interface -------------------------------------------------------------

    def submit(self, build_id: str) -> None:
        self._wake.set()

    def abort(self, build_id: str) -> None:
        with self._lock:
            run = self._running.get(build_id)
        if run is not None:
            run.cancel.set()

    def start(self) -> None:
        self._ballast.ensure()
        self._recover()
        self._beat_worker()
        for target, name in ((self._dispatch, "dispatcher"), (self._heartbeat, "heartbeat")):
            thread = threading.Thread(target=target, name=f"shipyard-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wake.set()

    def drain(self, grace_s: float, stop_timeout_s: float = 60.0) -> None:
        """Graceful shutdown: claim nothing more (queued builds stay QUEUED for the next
        start), give running builds ``grace_s`` to finish, then stop the rest through the
        abort path (janitor included) and wait until each is concluded (``CRASHED``)."""
        self._draining.set()
        self._wake.set()
        deadline = time.monotonic() + grace_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            log.warning("stopping build %s: Shipyard is shutting down", run.build_id)
            if run.reason != "failure":
                run.reason = "shutdown"
            run.cancel.set()
        deadline = time.monotonic() + stop_timeout_s
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self.drain(0.0)
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=15)
        try:
            with self._sessions() as session:
                worker_store.unregister(session, self.worker_id)
                session.commit()
        except Exception:  # a killed worker's row stays too; it just shows as not alive
            log.exception("could not remove worker %s", self.worker_id)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    @property
    def accepting(self) -> bool:
        """Started and claiming builds (not draining for a shutdown)."""
        return self.started and not self._draining.is_set()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # --- recovery and leases ------------------------------------------------------------

    def _recover(self) -> None:
        """Builds a previous process on this host left running can never finish: end them."""
        with self._sessions() as session:
            for build in build_store.running_held_by(session, self.worker_prefix):
                if build.worker_id == self.worker_id or _pid_alive(build.worker_id):
                    continue
                build_store.conclude(
                    session, build.id, build.attempt, BuildStatus.CRASHED, CRASH_MESSAGE
                )
            # Worker rows of dead processes on this host (a crash or kill -9 left them).
            for worker in worker_store.listed(session):
                if worker.id.startswith(self.worker_prefix) and not _pid_alive(worker.id):
                    worker_store.unregister(session, worker.id)
            worker_store.prune(session, WORKER_ROW_KEPT)
            session.commit()
        self._sweep_leases()

    def _sweep_leases(self) -> None:
        with self._lock:
            # Ours and visibly alive: a lease that ran out while the database was busy (its
            # renewals waited) says nothing about them.
            alive = {(r.build_id, r.attempt) for r in self._running.values() if r.alive}
        with self._sessions() as session:
            for build in build_store.expired_leases(session, self._lease):
                if (build.id, build.attempt) in alive:
                    continue
                build_store.conclude(
                    session, build.id, build.attempt, BuildStatus.CRASHED, LEASE_MESSAGE
                )
            session.commit()

    def _heartbeat(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            self._ballast.ensure()
            with self._lock:
                runs = list(self._running.values())
            for run in runs:
                if not run.alive:
                    continue  # let the lease run out: nothing shows this build progressing
                try:
                    with self._sessions() as session:
                        abort = build_store.heartbeat(session, run.build_id, run.attempt)
                        session.commit()
                except Exception:  # a DB hiccup must not kill the heartbeat thread
                    log.exception("heartbeat failed for %s", run.build_id)
                    continue
                if abort is None or abort:
                    run.cancel.set()
            try:
                self._sweep_leases()
            except Exception:
                log.exception("lease sweep failed")
            self._beat_worker()

    def _beat_worker(self) -> None:
        """This process's row in ``workers`` (GET /v1/workers, liveness metrics): inserted
        at start (and again if it was removed), renewed each heartbeat round."""
        try:
            with self._sessions() as session:
                running = len(self.running())
                if not worker_store.heartbeat(session, self.worker_id, running):
                    worker_store.register(
                        session,
                        self.worker_id,
                        socket.gethostname(),
                        os.getpid(),
                        self._concurrency,
                    )
                    worker_store.heartbeat(session, self.worker_id, running)
                session.commit()
            self.metrics.heartbeat()
        except Exception:  # the worker list is for people; builds go on without it
            log.exception("could not renew worker %s", self.worker_id)

    # --- dispatch ----------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._draining.is_set():
            self._wake.wait(timeout=self.dispatch_poll_s)
            self._wake.clear()
            if self._draining.is_set():
                return
            try:
                self._fill_slots()
            except Exception:
                log.exception("dispatch failed")

    def _fill_slots(self) -> None:
        """Claim what the fairness policy lets start (shipyard/executors/dispatch.py); with
        no free slot the pass still refreshes the queued builds' ``Queued: …`` lines."""
        with self._lock:
            free = max(0, self._concurrency - len(self._running))
        if self._draining.is_set():
            free = 0  # shutting down: claim nothing, only refresh the queued lines
        for claim in self._dispatcher.dispatch(self.worker_id, free):
            run = _Running(claim.build_id, claim.attempt, queued_at=claim.queued_at)
            run.thread = threading.Thread(
                target=self._execute, args=(run,), name=f"build-{claim.build_id}", daemon=True
            )
            with self._lock:  # started under the lock: drain() never joins an unstarted one
                self._running[claim.build_id] = run
                run.thread.start()

    def _execute(self, run: _Running) -> None:
        try:
            self._execute_fenced(run)
        except NotOurKey:
            # Not the build's fault and not an internal error: say what to fix (a scale-out
            # worker started with another secret key than the API's).
            log.error("build %s: %s", run.build_id, WRONG_KEY_MESSAGE)
            self._conclude(run, BuildStatus.CRASHED, WRONG_KEY_MESSAGE)
        except Exception:
            log.exception("build %s crashed", run.build_id)
            self._conclude(
                run,
                BuildStatus.CRASHED,
                "internal error while running the build (see the server log)",
            )
        finally:
            with self._lock:
                self._running.pop(run.build_id, None)
            self._wake.set()

    def _execute_fenced(self, run: _Running) -> None:
        with self._sessions() as session:
            build = build_store.get_any(session, run.build_id)
            assert build is not None
            workload = workload_store.get_by_id(session, build.workload_id)
            request = build_service.load_request(self._box, workload, build)
            build_config = workload.spec.get("buildConfiguration") or {}
            repo_url, repo_credentials = build_service.repository_url(self._box, workload)
            project = project_store.get(session, workload.project_id)
            pulls = pull_credentials.stored(self._box, project)
            job = BuildJob(
                build_id=build.id,
                attempt=run.attempt,
                project_id=workload.project_id,
                workload_slug=workload.slug,
                repository_url=repo_url,
                request=request,
                use_cache=workload.use_cache,
                # A job without a sha builds its branch's tip (the job seed); path rules and
                # commit ignore flags pick the most recent relevant commit for services only.
                path_rules=PathRules.of(
                    workload.path_ignore_rules, workload.is_allow_list, build_config
                )
                if workload.entity != "job"
                else None,
                secrets_key=self._box.fingerprint(
                    {
                        "purpose": "secret-mount cache",
                        "secrets": request.overrides.to_secret_json()["dockerSecretMounts"],
                    }
                )
                if request.overrides.secret_mounts
                else None,
                sandbox=SandboxRequest.from_spec(workload.spec.get("buildSandbox")),
                default_branch=workload.vcs_branch,
                include_git_folder=build_config.get("includeGitFolder") is True,
                full_clone=build_config.get("fullGitClone") is True,
                pull_credentials={h: (c.username, c.password) for h, c in pulls.items()},
            )
        secrets: list[bytes | str] = [*request.overrides.secret_values(), *self._pipeline_secrets()]
        if repo_credentials:
            secrets += [repo_credentials, *repo_credentials.split(":", 1)]
        secrets += [credential.password for credential in pulls.values()]
        redactor = Redactor(secrets)
        reuse_key = reuse_key_of(self._box, job)
        sink = BuildLog(
            self._sessions, run.build_id, run.attempt, redactor, self._log_limits,
            fail_after_s=self._log_fail_after_s, on_failure=run.fail,
        )  # fmt: skip
        run.sink = sink
        status, message, values = BuildStatus.FAILURE, "", {}
        try:
            sink(f"Build {run.build_id} (attempt {run.attempt}) on {self.worker_id}")
            outcome = self._pipeline.run(
                job, _Reporter(self._sessions, run, sink, self.metrics), run.cancel,
                reuse=partial(self._reusable, build_id=run.build_id, reuse_key=reuse_key),
            )  # fmt: skip
            status, message = BuildStatus.SUCCESS, "Image successfully built"
            if outcome.reused_from:
                message += f" (reused from build {outcome.reused_from}: same commit and settings)"
            values = {
                "registry_uri": outcome.image,
                "image_digest": outcome.digest,
                "reuse_key": reuse_key,
                "base_images": dict(outcome.base_images),
                "sbom_digest": outcome.sbom_digest,
                "provenance_digest": outcome.provenance_digest,
            }
            sink(f"Image available at {outcome.image}")
        except Cancelled:
            status, message = self._stopped(run)
        except (TimedOut, PipelineError) as exc:
            # A step that failed because the abort killed it (a RUN whose processes got the
            # signal first) was stopped, not broken: say what stopped it.
            stopped = run.cancel.is_set() and not isinstance(exc, TimedOut)
            status, message = self._stopped(run) if stopped else (BuildStatus.FAILURE, exc.message)
        finally:
            if run.failure and status is BuildStatus.SUCCESS:
                # The image is fine, but the log that goes with it is not: say so.
                status, message = BuildStatus.FAILURE, run.failure
            if message:
                sink(f"==> {status.value.lower()}: {message}")
            sink.close()
        self._conclude(run, status, message, **values)

    @staticmethod
    def _stopped(run: _Running) -> tuple[BuildStatus, str]:
        if run.reason == "shutdown":
            return BuildStatus.CRASHED, SHUTDOWN_MESSAGE
        if run.reason == "failure" and run.failure:
            return BuildStatus.FAILURE, run.failure
        return BuildStatus.ABORTED, "Build aborted"

    def _conclude(self, run: _Running, status: BuildStatus, message: str, **values: object) -> None:
        """The fenced final write, retried with backoff while the database is away; if it
        never lands, the lease sweep (or the next start) ends the build ``CRASHED``."""
        deadline = time.monotonic() + CONCLUDE_RETRY_S
        delay = 0.1
        while True:
            try:
                with self._sessions() as session:
                    landed = build_store.conclude(
                        session, run.build_id, run.attempt, status, message, **values
                    )
                    session.commit()
                if landed:
                    self.metrics.stage(*run.enter(status.value))
                    self.metrics.concluded(
                        status.value, run.queued_at, run.started_at, datetime.now(UTC)
                    )
                return
            except Exception as exc:
                if is_disk_full(exc) and self._ballast.release():
                    continue  # room for this write now
                if time.monotonic() > deadline:
                    log.exception("could not record the outcome of %s", run.build_id)
                    return
                log.warning("recording the outcome of %s failed; retrying", run.build_id)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _reusable(self, sha: str, *, build_id: str, reuse_key: str) -> Outcome | None:
        with self._sessions() as session:
            build = build_store.get_any(session, build_id)
            assert build is not None
            earlier = build_store.reusable(session, build.workload_id, sha, reuse_key)
        if earlier is None or earlier.registry_uri is None or earlier.image_digest is None:
            return None
        if earlier.base_images is None:
            return None  # built before base images were recorded: cannot tell they are unchanged
        return Outcome(
            image=earlier.registry_uri,
            tag="",
            digest=earlier.image_digest,
            reused_from=earlier.id,
            base_images=earlier.base_images,
            # The same image: the SBOM and provenance attached to it are the earlier build's.
            sbom_digest=earlier.sbom_digest,
            provenance_digest=earlier.provenance_digest,
        )

    def _pipeline_secrets(self) -> list[str]:
        password = self._pipeline.registry.password
        return [password] if password else []


def reuse_key_of(box: SecretBox, job: BuildJob) -> str:
    """What, besides the commit, shapes the image: the same key and sha give the same image."""
    overrides = job.request.overrides
    docker = overrides.docker
    key: dict[str, object] = {
        "dockerfile": docker.dockerfile_path,
        "workDir": docker.work_dir,
        "target": docker.target,
        "secrets": overrides.to_secret_json(),
        "repository": job.repository_url,
    }
    if docker.dockerfile_contents is not None:
        # Only when set: the keys of earlier builds stay valid.
        key["dockerfileContents"] = docker.dockerfile_contents
    return box.fingerprint(key)


def _pid_alive(worker_id: str | None) -> bool:
    try:
        pid = int((worker_id or "").split(":")[2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
