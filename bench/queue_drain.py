"""Benchmark 5: the queue. MEASURES THE QUEUE ONLY — builds are run by a stand-in pipeline
(a no-op that reports the same stages and a log line as the real one, then returns an
image), so no git, buildah or registry is involved.

Shipyard side: the real ``shipyard.executors.local.LocalExecutor`` (concurrency 2, real
claim/fence/heartbeat/log writes) on a fresh SQLite database made by ``create_app``; builds
are enqueued exactly as the API does it (``builds.service.start`` + commit +
``executor.submit``), from the main thread, while the executor drains.

Baseline, same process and database engine settings: a minimal table queue — INSERT to
enqueue, two threads that claim the oldest QUEUED row with one conditional UPDATE …
RETURNING, run the same no-op, and conclude with one UPDATE; woken by a Condition.

Two scenarios, each side by side per round (order alternating):
- burst: N builds enqueued as fast as possible: time until all concluded, enqueue→start
  latency p50/p99 (mostly waiting behind the backlog), and none lost (every build SUCCESS,
  run exactly once, attempt 1);
- paced: builds enqueued at a fixed rate well under capacity: enqueue→start latency, i.e.
  pick-up latency of an idle queue.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text, update

from bench.common import (
    Options,
    figure,
    log,
    machine_info,
    paired_ratios,
    percentile,
    summary,
    write_result,
)
from shipyard.api.app import create_app
from shipyard.builds import service as build_service
from shipyard.builds.fairness import Limits
from shipyard.builds.ids import new_build_id
from shipyard.builds.request import BuildRequest, SourceKind, SourceSpec
from shipyard.builds.status import BuildStatus
from shipyard.executors.local import LocalExecutor
from shipyard.pipeline.run import BuildJob, Outcome, Reporter
from shipyard.settings import Settings, prepare
from shipyard.store import workloads as workload_store
from shipyard.store.db import make_engine, make_sessionmaker, migrate
from shipyard.store.models import Build

CONCURRENCY = 2
SHA = "a" * 40


@dataclass
class StandInRegistry:
    password: str | None = None


@dataclass
class StandInPipeline:
    """STAND-IN for shipyard.pipeline.run.Pipeline: no git, no buildah, no push."""

    registry: StandInRegistry = field(default_factory=StandInRegistry)
    runs: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self, job: BuildJob, report: Reporter, cancel: threading.Event, reuse: Any = None
    ) -> Outcome:
        # ``reuse`` (look-up of an identical earlier build) is ignored: every build "runs".
        with self.lock:
            self.runs[job.build_id] += 1
        report.stage(BuildStatus.CLONING)
        report.resolved(SHA, "main")
        report.stage(BuildStatus.BUILDING)
        report.line("STEP 1/1: no-op (queue benchmark stand-in)")
        report.stage(BuildStatus.UPLOADING)
        digest = "sha256:" + "b" * 64
        return Outcome(
            image=f"stand-in/{job.workload_slug}@{digest}", tag="stand-in", digest=digest
        )


def _latencies(rows: list[tuple[datetime, datetime | None]]) -> list[float]:
    return [(s - c).total_seconds() * 1000 for c, s in rows if s is not None]


def _tz(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _BenchExecutor(LocalExecutor):
    """The executor interface also asks for ``prepare`` (the runtime gets a project's build
    sandbox ready); the stand-in pipeline needs no sandbox."""

    def prepare(self, project_id: str) -> None:
        return None


def shipyard_queue(root: Path, n: int, rate: float | None) -> dict[str, Any]:
    settings = prepare(Settings(data_dir=root / "data", admin_token=None, secret_key=None))
    pipeline = StandInPipeline()
    made: list[LocalExecutor] = []

    def factory(s: Settings, sessions: Any, box: Any) -> LocalExecutor:
        # Every bench build is of one service: lift the one-build-per-service rule so both
        # sides run two at a time (the fair dispatch itself is still measured).
        executor = _BenchExecutor(sessions, box, pipeline, concurrency=CONCURRENCY,  # type: ignore[arg-type]
                                 heartbeat_s=s.heartbeat_s, lease_s=s.lease_s,
                                 limits=Limits(global_max=CONCURRENCY, service_max=0))  # fmt: skip
        made.append(executor)
        return executor

    app = create_app(settings, factory)
    with TestClient(app) as client:
        assert settings.admin_token is not None
        client.headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
        client.post("/v1/projects", json={"name": "bench"}).raise_for_status()
        client.post(
            "/v1/projects/bench/services/build",
            json={"name": "app", "vcsData": {"projectUrl": "file:///nowhere.git"}},
        ).raise_for_status()
        state = app.state.shipyard
        executor = made[0]
        request = BuildRequest(source=SourceSpec(SourceKind.GIT, sha=SHA, branch="main"))
        with state.sessions() as session:
            workload = workload_store.get(session, "bench", "service", "app")
            session.expunge(workload)
        t0 = time.perf_counter()
        for i in range(n):
            if rate is not None:
                _sleep_until(t0 + i / rate)
            with state.sessions() as session:
                session.add(workload)
                build, _ = build_service.start(session, state.box, workload, request)
                session.commit()
                session.expunge(workload)
            executor.submit(build.id)
        enqueued = time.perf_counter() - t0
        _wait(lambda: _count_concluded(state.sessions) >= n, 600)
        total = time.perf_counter() - t0
        with state.sessions() as session:
            rows = session.execute(select(Build.created_at, Build.started_at, Build.concluded_at,
                                          Build.status, Build.attempt)).all()  # fmt: skip
    return _outcome(rows, n, total, enqueued, pipeline.runs)


def _count_concluded(sessions: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).where(Build.concluded.is_(True))) or 0)


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("queue did not drain in time")
        time.sleep(0.01)


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _outcome(
    rows: Any, n: int, total: float, enqueued: float, runs: Counter[str]
) -> dict[str, Any]:
    lat = _latencies([(_tz(r[0]), _tz(r[1]) if r[1] else None) for r in rows])
    run_ms = [(_tz(r[2]) - _tz(r[1])).total_seconds() * 1000 for r in rows if r[1] and r[2]]
    success = sum(1 for r in rows if r[3] == BuildStatus.SUCCESS and r[4] == 1)
    return {
        "builds": n,
        "total_s": round(total, 4),
        "enqueue_s": round(enqueued, 4),
        "throughput_per_s": round(n / total, 2),
        "latency_p50_ms": round(percentile(lat, 50), 3),
        "latency_p99_ms": round(percentile(lat, 99), 3),
        "run_p50_ms": round(percentile(run_ms, 50), 3) if run_ms else None,
        "lost": n - success,
        "ran_twice": sum(1 for c in runs.values() if c > 1),
        "ran": len(runs),
    }


def bare_queue(root: Path, n: int, rate: float | None) -> dict[str, Any]:
    """BASELINE: the least a table queue must do on the same database (see module doc)."""
    url = f"sqlite:///{(root / 'bare.db').resolve()}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, spec, created_at) "
                          "VALUES ('bench', 'bench', '{}', :t)"), {"t": datetime.now(UTC)})  # fmt: skip
        conn.execute(text(
            "INSERT INTO workloads (project_id, entity, slug, kind, name, dockerfile_path, "
            "docker_work_dir, use_cache, path_ignore_rules, is_allow_list, spec, created_at) "
            "VALUES ('bench', 'service', 'app', 'build', 'app', '/Dockerfile', '/', 1, '[]', 0, "
            "'{}', :t)"), {"t": datetime.now(UTC)})  # fmt: skip
        workload_id = conn.scalar(text("SELECT id FROM workloads"))
    table = Build.__table__
    wake = threading.Condition()
    stop = threading.Event()
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    StandInPipeline()

    def worker() -> None:
        while not stop.is_set():
            with engine.begin() as conn:
                oldest = (select(table.c.id).where(table.c.status == "QUEUED")
                          .order_by(table.c.created_at, table.c.id).limit(1).scalar_subquery())  # fmt: skip
                row = conn.execute(
                    update(table).where(table.c.id == oldest, table.c.status == "QUEUED")
                    .values(status="STARTING", attempt=table.c.attempt + 1,
                            started_at=datetime.now(UTC), heartbeat_at=datetime.now(UTC))
                    .returning(table.c.id)
                ).first()  # fmt: skip
            if row is None:
                with wake:
                    wake.wait(0.5)
                continue
            with lock:
                runs[row[0]] += 1
            with engine.begin() as conn:
                conn.execute(update(table).where(table.c.id == row[0], table.c.attempt == 1)
                             .values(status="SUCCESS", concluded=True, success=True,
                                     concluded_at=datetime.now(UTC)))  # fmt: skip

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    for i in range(n):
        if rate is not None:
            _sleep_until(t0 + i / rate)
        with engine.begin() as conn:
            conn.execute(insert(table).values(
                id=new_build_id() + f"-{i}", workload_id=workload_id, status="QUEUED",
                concluded=False, success=False, source_kind="git", sha=SHA, branch="main",
                created_at=datetime.now(UTC), attempt=0, abort_requested=False))  # fmt: skip
        with wake:
            wake.notify()
    enqueued = time.perf_counter() - t0
    _wait(lambda: _count_concluded(sessions) >= n, 600)
    total = time.perf_counter() - t0
    stop.set()
    with wake:
        wake.notify_all()
    for t in threads:
        t.join(5)
    with sessions() as session:
        rows = session.execute(select(Build.created_at, Build.started_at, Build.concluded_at,
                                      Build.status, Build.attempt)).all()  # fmt: skip
    engine.dispose()
    return _outcome(rows, n, total, enqueued, runs)


def run(opts: Options) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    rounds = opts.runs(5, 1)
    n_burst = 200 if opts.quick else 1000
    n_paced, rate = (20, 20.0) if opts.quick else (60, 30.0)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {"shipyard": [], "bare": []} for s in ("burst", "paced")
    }
    for i in range(rounds):
        for scenario, n, r in (("burst", n_burst, None), ("paced", n_paced, rate)):
            order = ("shipyard", "bare") if i % 2 == 0 else ("bare", "shipyard")
            for side in order:
                root = Path(tempfile.mkdtemp(prefix="shipyard-bench-queue-"))
                try:
                    fn = shipyard_queue if side == "shipyard" else bare_queue
                    samples[scenario][side].append(fn(root, n, r))
                finally:
                    shutil.rmtree(root, ignore_errors=True)
            sy, ba = samples[scenario]["shipyard"][-1], samples[scenario]["bare"][-1]
            log(f"round {i + 1}/{rounds} {scenario}: shipyard {sy['total_s']:.2f} s "
                f"p99 {sy['latency_p99_ms']:.0f} ms lost {sy['lost']} | bare {ba['total_s']:.2f} s "
                f"p99 {ba['latency_p99_ms']:.0f} ms lost {ba['lost']}")  # fmt: skip

    def col(scenario: str, side: str, key: str) -> list[float]:
        return [float(x[key]) for x in samples[scenario][side]]

    # Per round: builds of both scenarios that did not end SUCCESS at attempt 1, or ran twice.
    lost = [
        float(b["lost"] + b["ran_twice"] + p["lost"] + p["ran_twice"])
        for b, p in zip(samples["burst"]["shipyard"], samples["paced"]["shipyard"], strict=True)
    ]
    figures = [
        figure(
            "burst_drain_time",
            f"drain {n_burst} queued builds (stand-in no-op pipeline), concurrency 2: Shipyard "
            "executor / minimal table queue",
            paired_ratios(col("burst", "shipyard", "total_s"), col("burst", "bare", "total_s")),
            context=(
                f"Shipyard {summary(col('burst', 'shipyard', 'total_s'), 2)['median']} s "
                f"({summary(col('burst', 'shipyard', 'throughput_per_s'), 0)['median']:.0f} builds/s), "
                f"bare {summary(col('burst', 'bare', 'total_s'), 2)['median']} s"
            ),
        ),
        figure(
            "burst_latency_p50",
            "burst: enqueue→start p50 (backlog wait), Shipyard / minimal queue",
            paired_ratios(
                col("burst", "shipyard", "latency_p50_ms"), col("burst", "bare", "latency_p50_ms")
            ),
            context=f"Shipyard p50 {summary(col('burst', 'shipyard', 'latency_p50_ms'), 0)['median']:.0f} ms, "
            f"p99 {summary(col('burst', 'shipyard', 'latency_p99_ms'), 0)['median']:.0f} ms",
        ),
        figure(
            "paced_latency_p50",
            f"paced {rate:g}/s: enqueue→start p50 (pick-up), Shipyard / minimal queue",
            paired_ratios(
                col("paced", "shipyard", "latency_p50_ms"), col("paced", "bare", "latency_p50_ms")
            ),
            context=f"Shipyard p50 {summary(col('paced', 'shipyard', 'latency_p50_ms'), 1)['median']} ms, "
            f"bare {summary(col('paced', 'bare', 'latency_p50_ms'), 1)['median']} ms",
        ),
        figure(
            "paced_latency_p99",
            f"paced {rate:g}/s: enqueue→start p99, Shipyard / minimal queue",
            paired_ratios(
                col("paced", "shipyard", "latency_p99_ms"), col("paced", "bare", "latency_p99_ms")
            ),
            context=f"Shipyard p99 {summary(col('paced', 'shipyard', 'latency_p99_ms'), 1)['median']} ms, "
            f"bare {summary(col('paced', 'bare', 'latency_p99_ms'), 1)['median']} ms",
        ),
        figure(
            "lost_or_duplicated",
            "builds lost or run twice (Shipyard, per round)",
            lost,
            target=("<=", 0),
            unit="builds",
        ),
    ]
    return {
        "name": "queue",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "params": {
            "rounds": rounds,
            "burst_builds": n_burst,
            "paced_builds": n_paced,
            "paced_rate_per_s": rate,
            "concurrency": CONCURRENCY,
            "pipeline": "stand-in no-op (queue only)",
        },
        "figures": figures,
        "summary": {
            f"{sc}/{side}": {
                k: summary(col(sc, side, k), 2)
                for k in (
                    "total_s",
                    "throughput_per_s",
                    "latency_p50_ms",
                    "latency_p99_ms",
                    "run_p50_ms",
                )
            }
            for sc in ("burst", "paced")
            for side in ("shipyard", "bare")
        },
        "samples": samples,
    }


def main(opts: Options) -> dict[str, Any]:
    result = run(opts)
    write_result("queue", opts, result)
    return result
