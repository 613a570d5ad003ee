"""One garbage collection: plan per service (``retention``), delete the manifests of
collected images, mark their builds, run the registry's offline garbage collector with pushes
held back, prune each project's buildah store. ``dry_run`` plans and measures only.

Order matters: the plan is made under the push gate (no push or reuse tags anything while
the digests to delete are chosen); deletes go through the API while the registry is still
writable; ``garbage-collect`` runs while it is read-only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.status import BuildStatus
from shipyard.gc import build_cache, stores
from shipyard.gc.disk import usage
from shipyard.gc.registry import Blobs, RegistryAdmin, RegistryAdminError, unique_bytes
from shipyard.gc.retention import ImageBuild, Plan, Policy, plan
from shipyard.pipeline.build_cache import RegistryCache
from shipyard.pipeline.push_gate import Gate, GateLost, GateUnavailable
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.pipeline.registry_tags import tag_for_branch
from shipyard.sandbox.sandbox import Sandbox
from shipyard.store.models import Build, Workload

log = logging.getLogger(__name__)

T = TypeVar("T")

# Expires build logs (shipyard/gc/log_retention.py) or, on a dry run, says what would go;
# returns the report's sentence. None: the report says logs were left alone.
LogRetention = Callable[[bool], str]


@dataclass
class ServiceReport:
    project_id: str
    entity: str
    slug: str
    policy: Policy
    kept: int
    collected: list[str]  # build ids
    deleted_digests: list[str]
    registry_bytes: int  # blobs only the collected images referenced (an estimate)
    store_images: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "projectId": self.project_id,
            "entity": self.entity,
            "id": self.slug,
            "keepLast": self.policy.keep_last,
            "keepDays": self.policy.keep_days,
            "kept": self.kept,
            "collected": self.collected,
            "deletedDigests": self.deleted_digests,
            "registryBytes": self.registry_bytes,
            "storeImages": self.store_images,
        }


@dataclass
class Report:
    dry_run: bool
    started_at: datetime
    services: list[ServiceReport] = field(default_factory=list)
    registry_before: int = 0
    registry_after: int = 0
    stores: list[stores.StoreResult] = field(default_factory=list)
    logs: str = ""
    uploads_removed: int = 0  # orphaned uploaded contexts deleted (shipyard.uploads)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "startedAt": self.started_at.isoformat().replace("+00:00", "Z"),
            "seconds": round(self.seconds, 2),
            "services": [s.to_json() for s in self.services],
            "registry": {"bytesBefore": self.registry_before, "bytesAfter": self.registry_after},
            "stores": [
                {
                    "projectId": r.project_id,
                    "bytesBefore": r.bytes_before,
                    "bytesAfter": r.bytes_after,
                    "imagesRemoved": r.images_removed,
                    "emptied": r.emptied,
                    **({"skipped": r.skipped} if r.skipped else {}),
                    **({"errors": r.errors} if r.errors else {}),
                }
                for r in self.stores
            ],
            "logs": self.logs,
            "uploadsRemoved": self.uploads_removed,
            "errors": self.errors,
        }


def stores_summary(report: Report) -> str:
    """The log line of a ``run_stores``."""
    removed = sum(len(r.images_removed) for r in report.stores)
    freed = sum(r.freed for r in report.stores)
    emptied = sum(r.emptied for r in report.stores)
    return (
        f"{removed} images removed from {len(report.stores)} stores ({emptied} emptied), "
        f"{freed} bytes freed, {len(report.errors)} errors"
    )


@runtime_checkable
class Collects(Protocol):
    """An executor that can collect garbage (the local runtime)."""

    def collect_garbage(self, dry_run: bool, policy: Policy | None = None) -> Report: ...


@dataclass(frozen=True)
class _Service:
    workload_id: int
    project_id: str
    entity: str
    slug: str
    default_branch: str | None
    policy: Policy
    builds: tuple[ImageBuild, ...]

    @property
    def repository(self) -> str:
        return f"{self.project_id}/{self.slug}"


@dataclass
class _Verdict:
    service: _Service
    plan: Plan
    blobs_kept: list[Blobs] = field(default_factory=list)
    blobs_doomed: list[Blobs] = field(default_factory=list)


class GarbageCollector:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sandbox: Sandbox | None,
        policy: Policy,
        *,
        gate: Gate,
        registry: RegistryTarget | None,
        embedded: EmbeddedRegistry | None,
        store_budget_bytes: int,
        log_retention: LogRetention | None = None,
        layer_cache: RegistryCache | None = None,
        upload_sweep: Callable[[], int] | None = None,
    ) -> None:
        """``registry``: Shipyard's own identity on the embedded registry; None with an
        external registry (its retention is its operator's: only stores are pruned).
        ``sandbox``: None where no build runs (a scale-out API): no store to prune."""
        self._sessions = sessions
        self._sandbox = sandbox
        self._policy = policy
        self._gate = gate
        self._registry = registry if embedded is not None else None
        self._embedded = embedded
        self._budget = store_budget_bytes
        self._log_retention = log_retention
        self._layer_cache = layer_cache  # the services' registry cache repositories
        # Deletes uploaded contexts no build will read (``shipyard.uploads.store.sweep``).
        self._upload_sweep = upload_sweep
        self._running = threading.Lock()  # one collection at a time

    # --- planning -----------------------------------------------------------------------

    def _services(self, session: Session, policy: Policy) -> list[_Service]:
        workloads = list(session.scalars(select(Workload)))
        rows = session.execute(
            select(
                Build.workload_id,
                Build.id,
                Build.created_at,
                Build.status,
                Build.image_digest,
                Build.branch,
                Build.image_collected_at,
            )
        )
        by_workload: dict[int, list[ImageBuild]] = defaultdict(list)
        for workload_id, build_id, created, status, digest, branch, collected in rows:
            by_workload[workload_id].append(
                ImageBuild(
                    id=build_id,
                    created_at=created,
                    success=status == BuildStatus.SUCCESS,
                    digest=digest,
                    branch=branch,
                    collected=collected is not None,
                )
            )
        services = []
        for w in workloads:
            retention = (w.spec or {}).get("retention")
            services.append(
                _Service(
                    workload_id=w.id,
                    project_id=w.project_id,
                    entity=w.entity,
                    slug=w.slug,
                    default_branch=w.vcs_branch,
                    policy=policy.overridden(retention if isinstance(retention, dict) else None),
                    builds=tuple(by_workload.get(w.id, [])),
                )
            )
        return services

    def _protected(self, admin: RegistryAdmin, service: _Service, first: Plan) -> set[str]:
        """Digests of the repository's tags that no collected build owns: kept builds' tags,
        and builds the database does not report yet (pushed, not yet concluded)."""
        owned: set[str] = set()
        for build in first.collected:
            owned.add(build.id)
            if build.branch and (tag := tag_for_branch(build.branch)):
                owned.add(tag)
        shas = self._shas(service.workload_id, [b.id for b in first.collected])
        owned |= shas
        protected: set[str] = set()
        for tag in admin.tags(service.repository):
            if tag in owned or tag.startswith("sha256-"):
                continue  # referrer indexes go with their subject
            digest = admin.resolve(service.repository, tag)
            if digest:
                protected.add(digest)
        return protected

    def _shas(self, workload_id: int, build_ids: list[str]) -> set[str]:
        if not build_ids:
            return set()
        with self._sessions() as session:
            rows = session.scalars(
                select(Build.sha).where(Build.workload_id == workload_id, Build.id.in_(build_ids))
            )
            return {sha for sha in rows if sha}

    def _plan(self, admin: RegistryAdmin | None, now: datetime, policy: Policy) -> list[_Verdict]:
        with self._sessions() as session:
            services = self._services(session, policy)
        verdicts = []
        for service in services:
            first = plan(service.builds, service.policy, now, default_branch=service.default_branch)
            if admin is not None and first.collected:
                protected = self._protected(admin, service, first)
                final = plan(
                    service.builds, service.policy, now,
                    default_branch=service.default_branch, protected_digests=protected,
                )  # fmt: skip
                verdict = _Verdict(service, final)
                repo = service.repository
                verdict.blobs_doomed = [admin.blobs(repo, d) for d in final.delete_digests]
                verdict.blobs_kept = [admin.blobs(repo, d) for d in final.kept_digests | protected]
            else:
                verdict = _Verdict(service, first)
            verdicts.append(verdict)
        return verdicts

    # --- the run ------------------------------------------------------------------------

    def run(self, *, dry_run: bool = False, policy: Policy | None = None) -> Report:
        """``policy``: this run's defaults instead of the operator's (``shipyard gc
        --keep-last``); a service's own ``retention`` still wins."""

        def phases(report: Report) -> None:
            try:
                verdicts = self._registry_phase(report, dry_run, policy or self._policy)
            except GateUnavailable as exc:
                # The registry is left for the next run; the rest of the run goes on.
                log.warning("garbage collection: %s", exc)
                report.errors.append(str(exc))
                verdicts = self._plan(None, datetime.now(UTC), policy or self._policy)
            self._store_phase(report, verdicts, dry_run)
            self._logs_phase(report, dry_run)
            if self._upload_sweep is not None and not dry_run:
                report.uploads_removed = self._upload_sweep()

        return self._timed(dry_run, phases)

    def run_stores(self, *, dry_run: bool = False) -> Report:
        """This machine's buildah stores only: a scale-out worker's own schedule. Its stores
        fill with every build it ran and every stage-cache entry it recorded, and no other
        machine can prune them. What goes is what ``run`` would prune here (images of builds
        the policy no longer keeps, stale stage-cache entries, a store over the budget); the
        registry, build logs and uploads belong to the API's machine and are left alone."""

        def phases(report: Report) -> None:
            verdicts = self._plan(None, datetime.now(UTC), self._policy)
            self._store_phase(report, verdicts, dry_run)

        return self._timed(dry_run, phases)

    def _timed(self, dry_run: bool, phases: Callable[[Report], None]) -> Report:
        with self._running:
            started = time.monotonic()
            report = Report(dry_run=dry_run, started_at=datetime.now(UTC))
            try:
                phases(report)
            except Exception as exc:  # reported, and logged with its traceback
                log.exception("garbage collection failed")
                report.errors.append(f"{type(exc).__name__}: {exc}")
            report.seconds = time.monotonic() - started
            return report

    def _registry_phase(self, report: Report, dry_run: bool, policy: Policy) -> list[_Verdict]:
        storage = self._embedded.storage_dir if self._embedded is not None else None
        report.registry_before = usage(storage) if storage is not None else 0
        admin = RegistryAdmin(self._registry) if self._registry is not None else None
        try:
            if dry_run or admin is None:
                verdicts = self._plan(admin, datetime.now(UTC), policy)
            else:
                with self._gate.maintenance() as confirm:
                    verdicts = self._plan(admin, datetime.now(UTC), policy)
                    try:
                        confirm()
                        pruned = self._prune_layer_cache(admin, verdicts, report)
                        self._delete(admin, verdicts, report, confirm, already=pruned)
                    except GateLost as exc:
                        # What was deleted until then is still reported below.
                        log.warning("garbage collection: %s", exc)
                        report.errors.append(str(exc))
        finally:
            if admin is not None:
                admin.close()
        for v in verdicts:
            if v.plan.collected:
                report.services.append(
                    ServiceReport(
                        project_id=v.service.project_id,
                        entity=v.service.entity,
                        slug=v.service.slug,
                        policy=v.service.policy,
                        kept=len(v.plan.kept),
                        collected=[b.id for b in v.plan.collected],
                        deleted_digests=sorted(v.plan.delete_digests),
                        registry_bytes=unique_bytes(v.blobs_doomed, v.blobs_kept),
                    )
                )
        report.registry_after = usage(storage) if storage is not None else 0
        return verdicts

    def _prune_layer_cache(
        self, admin: RegistryAdmin, verdicts: list[_Verdict], report: Report
    ) -> int:
        """Old entries of every service's registry layer cache (``gc.build_cache``)."""
        if self._layer_cache is None:
            return 0
        now, deleted = datetime.now(UTC), 0
        for v in verdicts:
            name = f"{v.service.project_id}/{self._layer_cache.name(v.service.slug)}"
            if self._registry is not None and self._registry.prefix:
                name = f"{self._registry.prefix}/{name}"
            try:
                deleted += build_cache.prune(admin, name, now=now,
                                             keep_days=v.service.policy.keep_days)  # fmt: skip
            except RegistryAdminError as exc:
                report.errors.append(f"{name}: {exc}")
        if deleted:
            log.info("garbage collection: %d old registry layer-cache entries deleted", deleted)
        return deleted

    def _delete(
        self,
        admin: RegistryAdmin,
        verdicts: list[_Verdict],
        report: Report,
        confirm: Callable[[], None],
        already: int = 0,
    ) -> None:
        """Manifests first, then the builds' marks, then the blobs (read-only registry).
        ``already``: manifests deleted before (old layer-cache entries): blobs to free too.
        ``confirm`` raises when the push gate was lost: nothing more is deleted."""
        deleted = already
        now = datetime.now(UTC)
        for v in verdicts:
            confirm()
            gone = True
            for digest in sorted(v.plan.delete_digests):
                try:
                    admin.delete_referrers(v.service.repository, digest)
                    admin.delete(v.service.repository, digest)
                    deleted += 1
                except RegistryAdminError as exc:
                    gone = False
                    report.errors.append(f"{v.service.repository}@{digest}: {exc}")
            if gone and v.plan.collected:
                self._mark(v.service.workload_id, [b.id for b in v.plan.collected], now)
        if deleted and self._embedded is not None:
            confirm()
            with self._embedded.maintenance():
                self._embedded.collect_garbage()
            confirm()  # a push may have overlapped the sweep: say so

    def _mark(self, workload_id: int, build_ids: list[str], when: datetime) -> None:
        with self._sessions() as session:
            session.execute(
                update(Build)
                .where(
                    Build.workload_id == workload_id,
                    Build.id.in_(build_ids),
                    Build.image_collected_at.is_(None),
                )
                .values(image_collected_at=when)
            )
            session.commit()

    def _store_phase(self, report: Report, verdicts: list[_Verdict], dry_run: bool) -> None:
        sandbox = self._sandbox
        if sandbox is None:
            return
        by_project: dict[str, list[_Verdict]] = defaultdict(list)
        for v in verdicts:
            by_project[v.service.project_id].append(v)
        for project_id, project_verdicts in sorted(by_project.items()):
            # Every build a service no longer keeps (collected now or earlier, failed builds
            # whose push failed): its local image is only a cache entry.
            doomed: list[tuple[str, str]] = []
            for v in project_verdicts:
                kept = {b.id for b in v.plan.kept}
                doomed += [(v.service.slug, b.id) for b in v.service.builds if b.id not in kept]
            if not sandbox.has_store(project_id):
                continue  # never built on this machine
            with sandbox.exclusive(project_id) as project:
                if project is None:
                    why = "builds of the project kept running; pruned by the next collection"
                    report.stores.append(stores.StoreResult(project_id, skipped=why))
                    continue
                try:
                    result = stores.prune(
                        project, project_id, doomed, budget_bytes=self._budget, dry_run=dry_run
                    )
                except Exception as exc:
                    log.exception("pruning the store of project %s failed", project_id)
                    report.errors.append(f"store of {project_id}: {exc}")
                    continue
            report.stores.append(result)
            count = {name.rsplit(":", 1)[-1] for name in result.images_removed}
            for s in report.services:
                if s.project_id == project_id:
                    s.store_images = len(count & set(s.collected))

    def _logs_phase(self, report: Report, dry_run: bool) -> None:
        if self._log_retention is None:
            report.logs = "build logs are not expired: no log retention is configured"
            return
        report.logs = self._log_retention(dry_run)


class Schedule(Generic[T]):
    """Runs ``collect`` every ``interval_s`` seconds (first after one interval: a start must
    not wait for, or be slowed by, a collection). ``summary`` says what a run did (the log
    line); by default, a garbage collection's report."""

    def __init__(
        self,
        collect: Callable[[], T],
        interval_s: float,
        *,
        name: str = "gc",
        summary: Callable[[T], str] | None = None,
    ) -> None:
        self._collect = collect
        self._interval_s = interval_s
        self._name = name
        self._summary = summary
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                report = self._collect()
            except Exception:  # the next interval tries again
                log.exception("scheduled %s failed", self._name)
                continue
            if self._summary is not None:
                log.info("%s: %s", self._name, self._summary(report))
            elif isinstance(report, Report):
                freed = report.registry_before - report.registry_after
                log.info(
                    "garbage collection: %d builds collected, registry freed %d bytes, %d errors",
                    sum(len(s.collected) for s in report.services),
                    freed,
                    len(report.errors),
                )

    def stop(self) -> None:
        self._stop.set()
