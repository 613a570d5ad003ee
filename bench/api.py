"""Benchmark 4: ``POST /v1/projects/{p}/services/{s}/build`` throughput and latency at 1, 8
and 32 concurrent clients, Shipyard (``SHIPYARD_EXECUTOR=none``: builds stay QUEUED) vs a
bare FastAPI endpoint doing one equivalent SQL insert into the same table of the same
database (``bench/bare_app.py``), on SQLite and on PostgreSQL.

The load generator is a separate process (``bench/loadgen.py``, httpx + asyncio, closed
loop, bounded in requests and seconds, loopback only). For each backend and concurrency the
two servers are measured alternately (a, b, b, a, …); ratios are paired per round. Besides
req/s and latency, the servers' own CPU time per request is recorded (from /proc), which is
less sensitive to other load on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import (
    Options,
    Server,
    create_service,
    figure,
    log,
    machine_info,
    paired_ratios,
    start_server,
    summary,
    wait_http,
    workspace,
    write_result,
)
from shipyard.pipeline.net import free_port
from shipyard.store.db import make_engine
from shipyard.store.models import Workload

PG_ADMIN = ["-h", "127.0.0.1", "-U", "postgres"]
PG_DB = "shipyard_bench"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
CONCURRENCY = (1, 8, 32)
PATH = "/v1/projects/bench/services/app/build"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def postgres_available() -> str | None:
    """None when usable, else why not."""
    try:
        out = subprocess.run(
            ["psql", *PG_ADMIN, "-d", "postgres", "-Atc", "select 1"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if out.returncode == 0 else out.stderr.strip()


def fresh_postgres_db() -> None:
    subprocess.run(["dropdb", *PG_ADMIN, "--if-exists", PG_DB], check=True, capture_output=True)
    subprocess.run(["createdb", *PG_ADMIN, PG_DB], check=True, capture_output=True)


def start_bare(database_url: str, token: str, workload_id: int, log_path: Path) -> Server:
    port = free_port()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_app", "--database-url", database_url,
             "--port", str(port), "--token", token, "--workload-id", str(workload_id)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/openapi.json", proc, log_path)
    return Server(proc, url, token, "", log_path.parent, log_path)


def load(server: Server, concurrency: int, opts: Options) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.loadgen", "--url", server.url, "--path", PATH,
        "--token", server.token, "--body", json.dumps({"branch": "main"}),
        "--concurrency", str(concurrency),
        "--requests", str(600 if opts.quick else 3000),
        "--seconds", str(1.0 if opts.quick else 2.5),
        "--warmup-seconds", "0.3",
    ]  # fmt: skip
    cpu0 = cpu_seconds(server.proc.pid)
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    cpu1 = cpu_seconds(server.proc.pid)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    if result["errors"]:
        raise RuntimeError(f"errors under load: {result['errors']}")
    # CPU includes the warm-up requests; count them via the server's totals is not possible,
    # so report CPU per measured request as an upper bound shared by both servers alike.
    result["server_cpu_s"] = round(cpu1 - cpu0, 3)
    result["cpu_ms_per_req"] = round((cpu1 - cpu0) * 1000 / max(1, result["completed"]), 4)
    return result


def run_backend(backend: str, opts: Options, root: Path) -> dict[str, Any]:
    rounds = opts.runs(5, 1)
    env = {"SHIPYARD_EXECUTOR": "none"}
    if backend == "postgresql":
        fresh_postgres_db()
        env["SHIPYARD_DATABASE_URL"] = PG_URL
    data = root / backend / "data"
    shipyard = start_server(data, **env)
    bare: Server | None = None
    try:
        create_service(shipyard, "bench", "app", "file:///nowhere.git")
        db_url = (
            PG_URL if backend == "postgresql" else f"sqlite:///{(data / 'shipyard.db').resolve()}"
        )
        engine = make_engine(db_url)
        with engine.connect() as conn:
            workload_id = conn.scalar(select(Workload.id).where(Workload.slug == "app"))
        engine.dispose()
        assert workload_id is not None
        bare = start_bare(db_url, shipyard.token, workload_id, root / backend / "bare.log")
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            str(c): {"shipyard": [], "bare": []} for c in CONCURRENCY
        }
        for c in CONCURRENCY:
            for i in range(rounds):
                order = (("shipyard", shipyard), ("bare", bare))
                for side, server in order if i % 2 == 0 else order[::-1]:
                    runs[str(c)][side].append(load(server, c, opts))
                s, b = runs[str(c)]["shipyard"][-1], runs[str(c)]["bare"][-1]
                log(
                    f"{backend} c={c} round {i + 1}/{rounds}: shipyard {s['rps']:.0f} req/s "
                    f"p99 {s['p99_ms']:.1f} ms | bare {b['rps']:.0f} req/s p99 {b['p99_ms']:.1f} ms"
                )
    finally:
        shipyard.stop()
        if bare is not None:
            bare.stop()
    return runs


def _col(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows]


def run(opts: Options) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    backends = ["sqlite"]
    skipped: dict[str, str] = {}
    why = postgres_available()
    if why is None:
        backends.append("postgresql")
    else:
        skipped["postgresql"] = why
        log(f"PostgreSQL skipped: {why}")
    samples: dict[str, Any] = {}
    figures: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    with workspace("api") as root:
        for backend in backends:
            runs = run_backend(backend, opts, root)
            samples[backend] = runs
            for c in CONCURRENCY:
                sy, ba = runs[str(c)]["shipyard"], runs[str(c)]["bare"]
                figures.append(
                    figure(
                        f"{backend}_rps_c{c}",
                        f"{backend}, {c} client{'s' if c > 1 else ''}: Shipyard req/s / bare req/s",
                        paired_ratios(_col(sy, "rps"), _col(ba, "rps")),
                        target=(">=", 0.5),
                        context=(
                            f"Shipyard {summary(_col(sy, 'rps'), 0)['median']:.0f} req/s, "
                            f"bare {summary(_col(ba, 'rps'), 0)['median']:.0f} req/s; "
                            f"p50 {summary(_col(sy, 'p50_ms'), 1)['median']} vs "
                            f"{summary(_col(ba, 'p50_ms'), 1)['median']} ms"
                        ),
                    )
                )
                latency[f"{backend}/c{c}"] = {
                    side: {k: summary(_col(rows, k), 2)
                           for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_ms_per_req")}
                    for side, rows in (("shipyard", sy), ("bare", ba))
                }  # fmt: skip
            sy32, ba32 = runs["32"]["shipyard"], runs["32"]["bare"]
            figures.append(
                figure(
                    f"{backend}_p99_c32",
                    f"{backend}, 32 clients: Shipyard p99 latency",
                    _col(sy32, "p99_ms"),
                    target=("<", 50),
                    unit="ms",
                    context=f"bare p99 {summary(_col(ba32, 'p99_ms'), 1)['median']} ms; "
                    f"ratio Shipyard/bare "
                    f"{summary(paired_ratios(_col(sy32, 'p99_ms'), _col(ba32, 'p99_ms')))['median']}",
                )
            )
            figures.append(
                figure(
                    f"{backend}_cpu_per_req_c32",
                    f"{backend}, 32 clients: server CPU per request, Shipyard / bare",
                    paired_ratios(_col(sy32, "cpu_ms_per_req"), _col(ba32, "cpu_ms_per_req")),
                    context=f"Shipyard {summary(_col(sy32, 'cpu_ms_per_req'), 2)['median']} ms, "
                    f"bare {summary(_col(ba32, 'cpu_ms_per_req'), 2)['median']} ms CPU a request",
                )
            )
    return {
        "name": "api",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "params": {"concurrency": CONCURRENCY, "rounds": opts.runs(5, 1), "skipped": skipped},
        "figures": figures,
        "latency": latency,
        "samples": samples,
    }


def main(opts: Options) -> dict[str, Any]:
    result = run(opts)
    write_result("api", opts, result)
    return result
