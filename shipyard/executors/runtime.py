"""Wires the embedded all-in-one: registry (embedded or external), buildah store, pipeline,
local executor. The registry lives exactly as long as the executor."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds import fairness
from shipyard.executors.base import Executor, NullExecutor
from shipyard.executors.local import LocalExecutor
from shipyard.gc.collector import GarbageCollector, Report, Schedule, stores_summary
from shipyard.gc.log_retention import LogPolicy, LogReport, LogRetention
from shipyard.gc.retention import Policy
from shipyard.health import checks
from shipyard.health.checks import Check
from shipyard.monitoring.worker import WorkerMetrics
from shipyard.pipeline import build_cache
from shipyard.pipeline.build_cache import RegistryCache
from shipyard.pipeline.builder import BuildahStore
from shipyard.pipeline.logsink import LogLimits
from shipyard.pipeline.push_gate import Gate
from shipyard.pipeline.registry import LOOPBACK, EmbeddedRegistry, RegistryTarget
from shipyard.pipeline.run import Pipeline, PipelineSettings
from shipyard.pipeline.source_git import CheckoutLimits
from shipyard.registryauth import realm, token_auth
from shipyard.registryauth.targets import build_target, own_target, shipyard_token_auth
from shipyard.sandbox.cgroups import Limits
from shipyard.sandbox.endpoints import Endpoint, plan
from shipyard.sandbox.network import NetworkMode
from shipyard.sandbox.sandbox import Sandbox, SandboxSettings, default_root
from shipyard.settings import Settings
from shipyard.store.ballast import Ballast
from shipyard.store.crypto import SecretBox
from shipyard.store.db import worker_sessions
from shipyard.store.models import Workload
from shipyard.uploads import store as uploads

log = logging.getLogger(__name__)


ExecutorMaker = Callable[..., LocalExecutor]


def log_retention(sessions: sessionmaker[Session], settings: Settings) -> LogRetention:
    return LogRetention(
        sessions, LogPolicy(settings.log_retention_days, settings.log_retention_max_mb << 20)
    )


def log_retention_schedule(
    retention: LogRetention, settings: Settings | None
) -> Schedule[LogReport]:
    """Log retention on ``SHIPYARD_LOG_RETENTION_INTERVAL_S``: one process of the
    installation runs it (``shipyard up``, whatever its executor); ``settings`` None: off
    here."""
    on = settings is not None and retention.policy.active
    return Schedule(
        retention.run,
        settings.log_retention_interval_s if on and settings is not None else 0,
        name="log-retention",
        summary=lambda r: f"logs of {len(r.builds)} builds removed ({r.lines} lines)",
    )


def garbage_collector(
    settings: Settings,
    sessions: sessionmaker[Session],
    sandbox: Sandbox | None,
    *,
    gate: Gate,
    registry: RegistryTarget | None,
    embedded: EmbeddedRegistry | None,
    retention: LogRetention,
    layer_cache: RegistryCache | None,
) -> GarbageCollector:
    """The operator's collection (``SHIPYARD_GC_*``) of what this process holds."""
    return GarbageCollector(
        sessions,
        sandbox,
        Policy(settings.gc_keep_last, settings.gc_keep_days),
        gate=gate,
        registry=registry,
        embedded=embedded,
        store_budget_bytes=int(settings.gc_store_budget_gb * (1 << 30)),
        log_retention=retention if retention.policy.active else None,
        layer_cache=layer_cache,
        upload_sweep=partial(
            uploads.sweep, sessions, settings.data_dir, ttl_s=settings.upload_ttl_s
        ),
    )


class LocalRuntime:
    """Executor facade that also owns the embedded registry's process.

    A scale-out worker (``shipyard worker``) is the same runtime with its own executor class
    (``make_executor``, same arguments as ``LocalExecutor``) and ``serve_registry=False``:
    the embedded registry is then the one ``shipyard up`` runs on this machine (same
    ``SHIPYARD_REGISTRY_PORT``), or on another one (``SHIPYARD_REGISTRY`` with
    ``SHIPYARD_REGISTRY_AUTH=shipyard``); the worker only pushes to it. Such a worker's schedule
    prunes only its own buildah stores (``GarbageCollector.run_stores``); the registry's
    collection and log retention stay with ``shipyard up``."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        box: SecretBox,
        *,
        make_executor: ExecutorMaker = LocalExecutor,
        serve_registry: bool = True,
        push_gate: Gate | None = None,
    ) -> None:
        """``push_gate``: what holds pushes back while the registry is collected; by default
        this process's own (a scale-out worker's is the fleet's)."""
        data = settings.data_dir
        self._sessions = sessions
        self._serve_registry = serve_registry
        self.embedded: EmbeddedRegistry | None = None
        self._starting: threading.Thread | None = None
        if not settings.registry:
            self.embedded = EmbeddedRegistry(
                data,
                settings.registry_port,
                auth=token_auth(settings),
                listen=settings.registry_listen,
            )
        # Shipyard's own identity (reuse checks); each build pushes and pulls with the
        # credential of its own project (Pipeline.build_target) on the embedded registry or
        # another Shipyard's (SHIPYARD_REGISTRY_AUTH=shipyard).
        target = own_target(settings, self.embedded)
        assert target is not None  # a registry setting or an embedded registry
        base = settings.base_images_dir or data / "base-images"
        reach = plan(registry_endpoints(settings, target, embedded=self.embedded is not None))
        self.sandbox = Sandbox(
            SandboxSettings(
                root=settings.sandbox_dir or default_root(settings.instance_id),
                instance_id=settings.instance_id,
                network=NetworkMode(settings.build_network),
                limits=Limits(
                    memory_bytes=settings.build_memory_mb * 1024 * 1024,
                    pids=settings.build_pids,
                    cpu_shares=settings.build_cpu_shares,
                    cpu_quota=settings.build_cpus,
                ),
                loopback_ports=reach.loopback_ports,
                local_endpoints=reach.local,
                remote_endpoints=reach.remote,
                allowed_networks=tuple(settings.build_allowed_networks),
                base_store=BuildahStore(root=base / "root", runroot=base / "runroot"),
                disk_bytes=int(settings.build_disk_gb * (1 << 30))
                if settings.build_disk_gb
                else None,
            )
        )
        pipeline = Pipeline(
            PipelineSettings(
                work_root=data / "work",
                build_timeout_s=settings.build_timeout_s,
                git_timeout_s=settings.git_timeout_s,
                max_bundle_bytes=settings.max_bundle_bytes,
                bundle_timeout_s=settings.bundle_timeout_s,
                allow_private_urls=settings.allow_private_urls,
                pull_tls_verify=not target.insecure,
                allowed_local_roots=tuple(settings.allowed_local_roots),
                allowed_networks=tuple(settings.build_allowed_networks),
                checkout_limits=CheckoutLimits(
                    settings.max_checkout_bytes, settings.max_checkout_entries
                ),
                push_stall_timeout_s=settings.push_stall_timeout_s,
                mirror_root=data / "mirrors" if settings.git_mirrors else None,
                build_cache=build_cache.configured(
                    settings.build_cache_registry,
                    settings.executor,
                    settings.build_cache_repository,
                ),
                data_dir=settings.data_dir,
                max_upload_bytes=settings.max_upload_bytes,
                supply_chain=settings.supply_chain,
                stage_cache=settings.stage_cache,
                builder_id=settings.builder_id or f"urn:shipyard:builder:{settings.instance_id}",
            ),
            self.sandbox,
            target,
            build_target=build_target(settings, self.embedded, target),
            fingerprint=box.fingerprint,
            push_gate=push_gate,
        )
        self.registry = target
        self.pipeline = pipeline
        self.log_retention = log_retention(sessions, settings)
        self.collector = garbage_collector(
            settings,
            sessions,
            self.sandbox,
            gate=pipeline.push_gate,
            registry=target,
            embedded=self.embedded,
            retention=self.log_retention,
            layer_cache=pipeline.settings.build_cache,
        )
        # A worker without the registry still prunes its own stores: nothing else can.
        self._gc_schedule: Schedule[Report] = (
            Schedule(self.collector.run, settings.gc_interval_s)
            if serve_registry
            else Schedule(
                self.collector.run_stores,
                settings.gc_interval_s,
                name="store-gc",
                summary=stores_summary,
            )
        )
        self._log_schedule = log_retention_schedule(
            self.log_retention, settings if serve_registry else None
        )
        # The executor's heartbeats, claims, outcomes and build logs go through an engine of
        # their own: they never wait behind API requests for a connection, and go first for
        # SQLite's writer (issue 11; shipyard/store/write_gate.py).
        self._worker_sessions = worker_sessions(sessions)
        self.executor = make_executor(
            self._worker_sessions,
            box,
            pipeline,
            concurrency=settings.max_concurrent_builds,
            limits=limits_of(settings),
            heartbeat_s=settings.heartbeat_s,
            lease_s=settings.lease_s,
            log_limits=LogLimits(settings.build_max_log_lines, settings.build_max_log_bytes),
            log_fail_after_s=settings.log_store_fail_after_s,
            ballast=Ballast.for_database(
                settings.resolved_database_url, settings.disk_reserve_mb << 20
            ),
        )

    @property
    def worker_sessions(self) -> sessionmaker[Session]:
        """The executor's own engine (a scale-out worker's sweep uses it too)."""
        return self._worker_sessions

    @property
    def metrics(self) -> WorkerMetrics:
        """The in-process worker's histograms and gauges (the API's /metrics adds them)."""
        return self.executor.metrics

    def submit(self, build_id: str) -> None:
        self.executor.submit(build_id)

    def release(self, project_id: str) -> None:
        self._background(f"release-{project_id}", self.sandbox.release, project_id)

    def reset_cache(self, project_id: str, workload_id: int) -> None:
        # One layer store per project: every workload of it starts from a cold cache.
        self._background(f"reset-{project_id}", self.sandbox.reset_cache, project_id)
        cache = self.pipeline.settings.build_cache
        if cache is None:
            return
        with self._sessions() as session:
            workload = session.get(Workload, workload_id)
            slug = workload.slug if workload is not None else None
        if slug is None:
            return
        repository = self.registry.repository(project_id, cache.name(slug))

        def drop(_project_id: str) -> None:
            # The registry cache too, or a fresh worker would bring every layer back.
            if self.registry.username is None:
                log.warning("cannot drop the registry cache %s: no registry credential",
                            repository)  # fmt: skip
                return
            gone = build_cache.drop(self.registry, repository)
            log.info("dropped %d entries of the registry build cache %s", gone, repository)

        self._background(f"reset-registry-cache-{project_id}", drop, project_id)

    @staticmethod
    def _background(name: str, fn: Callable[[str], None], project_id: str) -> None:
        def work() -> None:
            try:
                fn(project_id)
            except Exception:  # a failed clean-up must not take the server down
                log.exception("%s failed", name)

        threading.Thread(target=work, name=name, daemon=True).start()

    def prepare(self, project_id: str) -> None:
        def prepare() -> None:
            try:
                self.sandbox.prepare(project_id)
            except Exception:  # the first build will try again and report it
                log.exception("preparing the build sandbox of project %s failed", project_id)

        threading.Thread(target=prepare, name=f"prepare-{project_id}", daemon=True).start()

    def abort(self, build_id: str) -> None:
        self.executor.abort(build_id)

    def health(self) -> list[Check]:
        return [
            checks.registry_answering(self.embedded, self.registry),
            checks.builder_usable(
                accepting=self.executor.accepting, starting=not self.executor.started
            ),
        ]

    def collect_garbage(self, dry_run: bool, policy: Policy | None = None) -> Report:
        return self.collector.run(dry_run=dry_run, policy=policy)

    def start(self) -> None:
        """The registry now (a port clash must stop ``shipyard up``); what a killed server
        left (processes, namespaces, working containers) is cleaned and its builds are
        concluded in the background, so the API answers at once after a restart; builds
        start when that is done."""
        began = time.monotonic()
        self.sandbox.start()
        if self.embedded is not None and self._serve_registry:
            self.embedded.start()
        registry_s = time.monotonic() - began

        def recover() -> None:
            try:
                removed = self.pipeline.clean_leftovers()
                self.sandbox.prepare_network()
                self.executor.start()
            except Exception:
                log.exception("starting the build executor failed")
                return
            log.info(
                "executor started %.2f s after the runtime (registry %.2f s, %d leftover "
                "builds cleaned)",
                time.monotonic() - began,
                registry_s,
                removed,
            )

        self._starting = threading.Thread(target=recover, name="shipyard-recover", daemon=True)
        self._starting.start()
        self._gc_schedule.start()
        self._log_schedule.start()

    def drain(self, grace_s: float) -> None:
        if self._starting is not None:
            self._starting.join()
        # The registry (and the API's token endpoint) stay up meanwhile: builds finishing
        # within the grace still push.
        self.executor.drain(grace_s)

    def stop(self) -> None:
        self._gc_schedule.stop()
        self._log_schedule.stop()
        if self._starting is not None:
            self._starting.join()
        self.executor.stop()
        self.sandbox.stop()
        if self.embedded is not None and self._serve_registry:
            self.embedded.stop()
        self._worker_sessions.kw["bind"].dispose()


def registry_endpoints(
    settings: Settings, target: RegistryTarget, *, embedded: bool
) -> list[Endpoint]:
    """What a build's namespace must reach of Shipyard: the token endpoint (the realm the
    registry names) and the registry it pushes to. Nothing else of the host; with the
    defaults both are loopback ports (127.0.0.1:SHIPYARD_PORT, :SHIPYARD_REGISTRY_PORT)."""
    endpoints = [Endpoint.parse(realm(settings), settings.port)]
    if embedded:
        endpoints.append(Endpoint(LOOPBACK, settings.registry_port))
    elif shipyard_token_auth(settings):
        # Another Shipyard's registry, wherever it is: exactly its host:port.
        endpoints.append(Endpoint.parse(target.host, 80 if target.insecure else 443))
    elif (port := loopback_port(target.host)) is not None:
        # An external registry on this machine; one elsewhere is the operator's to allow
        # (SHIPYARD_BUILD_ALLOWED_NETWORKS when it is in a private range).
        endpoints.append(Endpoint(LOOPBACK, port))
    return endpoints


def loopback_port(host: str) -> int | None:
    """The port of ``127.0.0.1:5000`` / ``localhost:5000`` / ``[::1]:5000``, else None."""
    name, _, port = host.rpartition(":")
    if name in ("127.0.0.1", "localhost", "[::1]") and port.isdigit():
        return int(port)
    return None


def limits_of(settings: Settings) -> fairness.Limits:
    """The fairness limits (shipyard/builds/fairness.py) from the settings."""
    return fairness.Limits(
        global_max=max(1, settings.max_concurrent_builds),
        project_max=settings.project_max_running,
        service_max=settings.service_max_running,
    )


def executor_for(
    settings: Settings,
    sessions: sessionmaker[Session],
    box: SecretBox,
    *,
    with_worker: bool = False,
) -> Executor:
    """``with_worker``: scale-out only, a build worker in the API's process too."""
    if settings.executor == "none":
        return NullExecutor()
    if settings.executor == "local":
        return LocalRuntime(settings, sessions, box)
    if settings.executor == "procrastinate":
        # Imported here: the worker module builds on this one.
        from shipyard.executors.procrastinate.api import ProcrastinateApi

        return ProcrastinateApi(settings, sessions, box, with_worker=with_worker)
    raise ValueError(
        f"unknown SHIPYARD_EXECUTOR {settings.executor!r} (local | none | procrastinate)"
    )
