"""Benchmark 6: where the time goes in what misses its target, and what the proposed
changes would gain.

1. ``api_cpu``: py-spy (``--gil``: only the thread holding the GIL, i.e. the CPU that bounds
   a one-process server) on ``shipyard up`` (SQLite, ``SHIPYARD_EXECUTOR=none``) under one
   client: what one start-build request costs, by part of the request path.
2. ``api_threads``: py-spy over every thread (``--idle --nonblocking``) under 32 clients:
   what the thread-pool workers are doing — running Python, inside an SQLite call (which
   includes SQLite's busy-wait sleeps on the write lock), or idle.
3. ``variants``: PROTOTYPES (``bench/variants.py``: the real app with the proposed changes
   applied from outside, nothing in shipyard/ edited) side by side with the unchanged
   server and the bare endpoint, 1 and 32 clients, on SQLite and PostgreSQL.
4. ``queue``: py-spy (``--gil``) on this process while the real LocalExecutor drains a burst
   of stand-in (no-op) builds.

The build pipeline needs no sampler: its time is in git/buildah child processes, and the
cache benchmark already records per-phase times from the build's own log timestamps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.api import PATH, PG_URL, fresh_postgres_db, postgres_available, start_bare
from bench.common import (
    BIN,
    ROOT,
    Options,
    Server,
    create_service,
    figure,
    log,
    machine_info,
    paired_ratios,
    start_server,
    summary,
    workspace,
    write_result,
)
from shipyard.store.db import make_engine
from shipyard.store.models import Workload

PY_SPY = BIN / "py-spy"

# (label, predicate on one stack's frames) — inclusive share of samples.
API_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("dependency app_state()", ("app_state (shipyard/api/deps.py",)),
    ("dependency db_session() enter+exit", ("db_session (shipyard/api/deps.py",)),
    ("dependency caller() (auth)", ("caller (shipyard/api/deps.py",)),
    ("request body validation (pydantic)", ("request_body_to_args (fastapi",
                                            "_validate_value_with_model_field")),
    ("endpoint start_service_build (all)", ("start_service_build (shipyard",)),
    ("  workload_store.get (SELECT workload)", ("get (shipyard/store/workloads.py",)),
    ("  build_service.start (all)", ("start (shipyard/builds/service.py",)),
    ("    build_store.insert: session.get + SAVEPOINT + INSERT", ("insert (shipyard/store/builds.py",)),
    ("    SecretBox.seal (AES-GCM)", ("seal (shipyard/store/crypto.py",)),
    ("  Session.commit", ("commit (sqlalchemy/orm/session.py",)),
    ("  build_out + envelope", ("build_out (shipyard", "envelope (shipyard")),
    ("response validation + serialisation (return annotation dict[str, Any] = a response "
     "model: validated in one more thread-pool hop)", ("serialize_response (fastapi",)),
    ("access log (logging)", ("(logging/__init__.py",)),
    ("SQLAlchemy in total (ORM + Core + pool)", ("(sqlalchemy/",)),
    ("  of which the DB driver call (do_execute / do_commit / connect)",
     ("do_execute (sqlalchemy", "do_commit (sqlalchemy", "do_rollback (sqlalchemy",
      "connect (sqlalchemy/engine/default.py", "_exec_single_context")),
]  # fmt: skip

QUEUE_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("enqueue: build_service.start + commit (main thread)", ("start (shipyard/builds/service.py",)),
    ("dispatcher: _fill_slots (queued_ids + claim + thread start)", ("_fill_slots (shipyard",)),
    ("build thread: _execute (all)", ("_execute (shipyard/executors/local.py",)),
    ("  load build + workload + request (AES open)", ("load_request (shipyard", "get_by_id (shipyard",
                                                     "get_any (shipyard")),
    ("  BuildLog: init (next_seq), lines, flush, close", ("BuildLog.__init__", "BuildLog.flush",
                                                         "BuildLog.close", "BuildLog.__call__")),
    ("  _Reporter stage/resolved writes (UPDATE + commit each)", ("_Reporter._write",)),
    ("  conclude (UPDATE + commit)", ("conclude (shipyard/store/builds.py",)),
    ("  stand-in pipeline itself", ("StandInPipeline.run",)),
    ("heartbeat thread", ("_heartbeat (shipyard",)),
    ("SQLAlchemy in total", ("(sqlalchemy/",)),
    ("  of which the DB driver call", ("do_execute (sqlalchemy", "do_commit (sqlalchemy",
                                      "_exec_single_context")),
]  # fmt: skip


def have_py_spy() -> bool:
    return PY_SPY.exists()


def py_spy(pid: int, seconds: float, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PY_SPY), "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-f", "raw",
         "-o", str(out), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(spy: subprocess.Popen[bytes], timeout: float) -> None:
    _, err = spy.communicate(timeout=timeout)
    if spy.returncode not in (0, None) and spy.returncode != -2:
        log(f"py-spy exited {spy.returncode}: {err.decode(errors='replace')[-500:]}")


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    if not path.exists():
        raise RuntimeError(f"py-spy wrote no profile to {path}")
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def breakdown(
    stacks: list[tuple[list[str], int]], parts: list[tuple[str, tuple[str, ...]]]
) -> list[dict[str, Any]]:
    """Inclusive share of samples whose stack holds any of a part's frames."""
    total = sum(n for _, n in stacks) or 1
    rows = []
    for label, needles in parts:
        hit = sum(n for frames, n in stacks if any(nd in f for f in frames for nd in needles))
        rows.append({"part": label, "share": round(hit / total, 3)})
    return rows


LIBRARIES: list[tuple[str, str]] = [
    ("shipyard/", "Shipyard's own code"),
    ("sqlalchemy/", "SQLAlchemy (ORM, Core, pool)"),
    ("pydantic", "pydantic"),
    ("fastapi/", "FastAPI (routing, dependencies, serialisation)"),
    ("starlette/", "Starlette (middleware, requests)"),
    ("uvicorn/", "uvicorn (HTTP protocol)"),
    ("anyio/", "thread-pool hand-offs (anyio, threading, queue)"),
    ("threading.py", "thread-pool hand-offs (anyio, threading, queue)"),
    ("queue.py", "thread-pool hand-offs (anyio, threading, queue)"),
    ("asyncio/", "asyncio event loop"),
    ("logging/", "logging (access log)"),
    ("json/", "json"),
    ("cryptography", "cryptography (AES-GCM)"),
]


def self_by_library(stacks: list[tuple[list[str], int]]) -> list[dict[str, Any]]:
    """Self time (leaf frame) grouped by the library the leaf is in."""
    total = sum(n for _, n in stacks) or 1
    groups: Counter[str] = Counter()
    for frames, n in stacks:
        leaf = frames[-1] if frames else ""
        groups[
            next((label for needle, label in LIBRARIES if needle in leaf), "other (stdlib, C)")
        ] += n
    return [{"library": g, "share": round(n / total, 3)} for g, n in groups.most_common()]


def _function(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def top_frames(
    stacks: list[tuple[list[str], int]], contains: str = "", k: int = 15
) -> list[dict[str, Any]]:
    total = sum(n for _, n in stacks) or 1
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        for f in {_function(x) for x in frames}:
            if contains in f and not f.startswith("thread ("):
                inclusive[f] += n
    return [{"frame": f, "share": round(n / total, 3)} for f, n in inclusive.most_common(k)]


def load_proc(server: Server, concurrency: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "--url", server.url, "--path", PATH,
         "--token", server.token, "--concurrency", str(concurrency), "--requests", "100000",
         "--seconds", str(seconds), "--warmup-seconds", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def profile_api(root: Path, opts: Options) -> dict[str, Any]:
    seconds = 3.0 if opts.quick else 6.0
    server = start_server(root / "data", SHIPYARD_EXECUTOR="none")
    try:
        create_service(server, "bench", "app", "file:///nowhere.git")
        out: dict[str, Any] = {}
        # 1. one client, GIL holder only: CPU composition of one request.
        lg = load_proc(server, 1, seconds + 1.5)
        time.sleep(0.8)
        spy = py_spy(server.proc.pid, seconds, root / "api-c1.txt", "--gil", "-r", "200")
        finish(spy, seconds + 30)
        stdout, _ = lg.communicate(timeout=60)
        stacks = read_raw(root / "api-c1.txt")
        out["api_cpu"] = {
            "load": stdout.strip(),
            "samples": sum(n for _, n in stacks),
            "parts": breakdown(stacks, API_PARTS),
            "self_by_library": self_by_library(stacks),
            "top_shipyard_frames": top_frames(stacks, "shipyard/", 12),
            "top_frames": top_frames(stacks, "", 25),
        }
        # 2. 32 clients, every thread: what the pool threads wait on.
        lg = load_proc(server, 32, seconds + 1.5)
        time.sleep(0.8)
        spy = py_spy(server.proc.pid, seconds, root / "api-c32.txt", "--idle", "--nonblocking",
                     "--threads", "-r", "100")  # fmt: skip
        finish(spy, seconds + 30)
        stdout, _ = lg.communicate(timeout=60)
        stacks = read_raw(root / "api-c32.txt")
        workers = [(f, n) for f, n in stacks if f and "AnyIO worker thread" in f[0]]
        total = sum(n for _, n in workers) or 1

        def share(*needles: str) -> float:
            return round(sum(n for f, n in workers
                             if any(nd in x for x in f for nd in needles)) / total, 3)  # fmt: skip

        idle = share("WorkerThread.run (anyio/_backends/_asyncio.py:1113)", "Queue.get (queue",
                     "Condition.wait (threading")  # fmt: skip
        in_db = share("do_execute (sqlalchemy", "do_commit (sqlalchemy", "_exec_single_context",
                      "do_rollback (sqlalchemy")  # fmt: skip
        out["api_threads"] = {
            "load": stdout.strip(),
            "worker_thread_samples": total,
            "worker_threads": len({f[0] for f, _ in workers}),
            "in_sqlite_call": in_db,
            "waiting_for_work": idle,
            "other_python": round(max(0.0, 1 - in_db - idle), 3),
            "top_leaf_frames": _top_leaves(workers, 10),
        }
        return out
    finally:
        server.stop()


def _top_leaves(stacks: list[tuple[list[str], int]], k: int) -> list[dict[str, Any]]:
    total = sum(n for _, n in stacks) or 1
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        leaves[frames[-1]] += n
    return [{"frame": f, "share": round(n / total, 3)} for f, n in leaves.most_common(k)]


VARIANTS = {
    "sqlite": ["async-deps", "lean-insert", "sqlite-pool-1",
               "async-deps,lean-insert,sqlite-pool-1,threads-4"],
    "postgresql": ["async-deps", "lean-insert", "async-deps,lean-insert,threads-8"],
}  # fmt: skip


def _load_once(server: Server, concurrency: int, seconds: float) -> dict[str, Any]:
    import json

    from bench.api import cpu_seconds

    argv = [sys.executable, "-m", "bench.loadgen", "--url", server.url, "--path", PATH,
            "--token", server.token, "--concurrency", str(concurrency), "--requests", "3000",
            "--seconds", str(seconds), "--warmup-seconds", "0.2"]  # fmt: skip
    cpu0 = cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    cpu1 = cpu_seconds(server.proc.pid)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout)
    if result["errors"]:
        raise RuntimeError(f"errors under load ({server.url}): {result['errors']}")
    result["cpu_ms_per_req"] = round((cpu1 - cpu0) * 1000 / max(1, result["completed"]), 4)
    return result


def variants(root: Path, opts: Options, backend: str) -> dict[str, Any]:
    rounds = opts.runs(5, 1)
    seconds = 0.6 if opts.quick else 1.5
    env = {"SHIPYARD_EXECUTOR": "none"}
    data = root / backend / "data"
    if backend == "postgresql":
        fresh_postgres_db()
        env["SHIPYARD_DATABASE_URL"] = PG_URL
        db_url = PG_URL
    else:
        db_url = f"sqlite:///{(data / 'shipyard.db').resolve()}"
    servers: dict[str, Server] = {}
    try:
        servers["stock"] = start_server(data, **env)
        create_service(servers["stock"], "bench", "app", "file:///nowhere.git")
        for v in VARIANTS[backend]:
            servers[v] = start_server(
                data, argv=[sys.executable, "-m", "bench.variants", "--variant", v], **env
            )
        engine = make_engine(db_url)
        with engine.connect() as conn:
            workload_id = conn.scalar(select(Workload.id).where(Workload.slug == "app"))
        engine.dispose()
        assert workload_id is not None
        servers["bare"] = start_bare(db_url, servers["stock"].token, workload_id,
                                     root / backend / "bare.log")  # fmt: skip
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for c in (1, 32):
            runs[str(c)] = {name: [] for name in servers}
            for i in range(rounds):
                order = list(servers.items())
                for name, server in order if i % 2 == 0 else order[::-1]:
                    runs[str(c)][name].append(_load_once(server, c, seconds))
            log(f"variants {backend} c={c}: " + ", ".join(
                f"{n} {summary([r['rps'] for r in rs], 0)['median']:.0f}/s"
                for n, rs in runs[str(c)].items()))  # fmt: skip
        return runs
    finally:
        for server in servers.values():
            server.stop()


def profile_queue(root: Path, opts: Options) -> dict[str, Any]:
    from bench.queue_drain import shipyard_queue

    n = 200 if opts.quick else 600
    out = root / "queue.txt"
    spy = py_spy(os.getpid(), 600, out, "--gil", "-r", "200")
    time.sleep(1.0)  # py-spy attached
    try:
        result = shipyard_queue(root / "q", n, None)
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        finish(spy, 60)
    stacks = read_raw(out)
    return {
        "drain": result,
        "samples": sum(n for _, n in stacks),
        "parts": breakdown(stacks, QUEUE_PARTS),
        "self_by_library": self_by_library(stacks),
        "top_shipyard_frames": top_frames(stacks, "shipyard/", 15),
    }


def process_poll(opts: Options) -> dict[str, Any]:
    """Each pipeline step runs through ``shipyard.pipeline.process.run``, which notices the
    child's exit only on its next ``cancel.wait(0.05)``: up to 50 ms per step. Measured as
    ``sleep 0.12`` (a short git step) through it vs through ``subprocess.run``, interleaved."""
    from shipyard.pipeline.process import run as process_run

    n = 6 if opts.quick else 20
    step = ["sleep", "0.12"]
    ours, plain = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        process_run(step, on_line=lambda _l: None, cancel=threading.Event(), timeout_s=10)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(step, check=True)
        plain.append(time.perf_counter() - t0)
    return {"process_run_ms": summary([x * 1000 for x in ours], 2),
            "subprocess_run_ms": summary([x * 1000 for x in plain], 2),
            "mean_excess_ms": round(1000 * (sum(ours) - sum(plain)) / n, 1),
            "ratios": paired_ratios(ours, plain)}  # fmt: skip


def run(opts: Options) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    poll = process_poll(opts)
    poll_figure = figure(
        "process_exit_poll",
        "a 120 ms step (`sleep 0.12`): shipyard.pipeline.process.run / subprocess.run",
        poll.pop("ratios"),
        context=f"{poll['mean_excess_ms']} ms lost a step on average; a build by sha runs 7 "
        "steps (5 git, bud, push)",
    )
    if not have_py_spy():
        log("py-spy not installed in the venv (.venv/bin/pip install py-spy): profile skipped")
        return {"name": "profile", "quick": opts.quick, "started": started, "machine": info,
                "process_poll": poll, "figures": [poll_figure],
                "note": "py-spy not installed: only the process-exit measurement ran"}  # fmt: skip
    result: dict[str, Any] = {"name": "profile", "quick": opts.quick, "started": started,
                              "machine": info, "process_poll": poll}  # fmt: skip
    figures: list[dict[str, Any]] = [poll_figure]
    with workspace("profile") as root:
        result.update(profile_api(root / "api", opts))
        log("api profile done")
        result["queue_profile"] = profile_queue(root, opts)
        log("queue profile done")
        backends = ["sqlite"] + (["postgresql"] if postgres_available() is None else [])
        result["variants"] = {}
        for backend in backends:
            runs = variants(root / "variants", opts, backend)
            result["variants"][backend] = runs
            for c in ("1", "32"):
                stock = [r["rps"] for r in runs[c]["stock"]]
                bare = [r["rps"] for r in runs[c]["bare"]]
                for name in runs[c]:
                    if name in ("stock", "bare"):
                        continue
                    rps = [r["rps"] for r in runs[c][name]]
                    p99 = [r["p99_ms"] for r in runs[c][name]]
                    figures.append(figure(
                        f"{backend}_c{c}_{name}",
                        f"PROTOTYPE {name} ({backend}, {c} client{'s' if c != '1' else ''}): "
                        "req/s vs unchanged Shipyard",
                        paired_ratios(rps, stock),
                        context=f"vs bare {summary(paired_ratios(rps, bare))['median']}; "
                        f"p99 {summary(p99, 1)['median']} ms (unchanged "
                        f"{summary([r['p99_ms'] for r in runs[c]['stock']], 1)['median']} ms, "
                        f"bare {summary([r['p99_ms'] for r in runs[c]['bare']], 1)['median']} ms); "
                        f"CPU {summary([r['cpu_ms_per_req'] for r in runs[c][name]], 2)['median']}"
                        f" ms/req (unchanged "
                        f"{summary([r['cpu_ms_per_req'] for r in runs[c]['stock']], 2)['median']})",
                    ))  # fmt: skip
    result["figures"] = figures
    result["duration_s"] = round(time.time() - started, 1)
    return result


def main(opts: Options) -> dict[str, Any]:
    result = run(opts)
    write_result("profile", opts, result)
    return result
