"""Benchmark 10: scale-out workers (issue 12). A real fleet on loopback: ``shipyard up`` with
SHIPYARD_EXECUTOR=procrastinate on a scratch PostgreSQL database (API + embedded registry, no
builds) and ``shipyard worker`` processes (concurrency 1 each, own data dirs). Real builds:
git fetch + buildah (``FROM scratch`` + one COPY, a build argument per build so none is
reused whole) + push.

- dispatch latency: builds started one at a time on an idle fleet; request (the build row's
  ``created_at``) → claimed (``started_at``, status STARTING), p50/p99 — the doorbell path:
  transactional defer, NOTIFY, procrastinate fetch, dispatch pass;
- first log line latency: request → the worker's first log line (``Build … (attempt 1) on
  …``) — claim plus loading the build and starting its log writer;
- throughput: a burst of N builds over 4 services, time until all concluded with 1 worker
  vs with 2 (the second worker stopped / started between sides, order alternating):
  ratio t(1 worker) / t(2 workers). On this 2-core shared machine two workers compete for the
  same CPUs and disk, so this ratio is a floor, not what two machines give.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    BIN,
    ROOT,
    Options,
    Server,
    figure,
    fmt_s,
    log,
    machine_info,
    make_sample_repo,
    percentile,
    start_server,
    summary,
    workspace,
    write_result,
)
from shipyard.pipeline.net import free_port
from shipyard.sandbox.sandbox import remove_instance
from shipyard.settings import read_instance_id

ADMIN_URL = os.environ.get("SHIPYARD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
PROJECT = "scale"
SERVICES = ("s0", "s1", "s2", "s3")
DOCKERFILE = "FROM scratch\nARG ROUND\nCOPY late.txt /late.txt\n"
FLEET_ENV = {
    "SHIPYARD_EXECUTOR": "procrastinate",
    "SHIPYARD_MAX_CONCURRENT_BUILDS": "4",
    "SHIPYARD_ALLOW_PRIVATE_URLS": "true",
}


@dataclass
class Worker:
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None


class Fleet:
    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.secret_key = secrets.token_urlsafe(32)
        self.env = {
            **FLEET_ENV,
            "SHIPYARD_DATABASE_URL": database_url,
            "SHIPYARD_SECRET_KEY": self.secret_key,
        }
        self.api: Server = start_server(root / "api" / "data", **self.env)
        self.workers = [
            Worker(root / f"w{i}" / "data", root / f"w{i}" / "worker.log") for i in (0, 1)
        ]

    def start(self, worker: Worker) -> None:
        worker.data_dir.mkdir(parents=True, exist_ok=True)
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")},
            **self.env,
            "SHIPYARD_DATA_DIR": str(worker.data_dir),
            "SHIPYARD_PORT": self.api.url.rsplit(":", 1)[1],
            "SHIPYARD_REGISTRY_PORT": self.api.registry.rsplit(":", 1)[1],
            "SHIPYARD_BUILD_NETWORK": "none",
            "SHIPYARD_ALLOWED_LOCAL_ROOTS": tempfile.gettempdir(),
        }
        port = free_port()
        with worker.log_path.open("ab") as out:
            worker.proc = subprocess.Popen(
                [str(BIN / "shipyard"), "worker", "--concurrency=1", f"--metrics-port={port}"],
                env=environment, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # ready once listed by the API (its executor has started)
            with self.api.client() as c:
                rows = c.get("/v1/workers").json()["data"]["workers"]
            if any(r.get("pid") == worker.proc.pid for r in rows):
                time.sleep(0.5)  # its procrastinate loop is LISTENing a moment later
                return
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self, worker: Worker) -> None:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
            try:
                worker.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait()
        worker.proc = None

    def close(self) -> None:
        for worker in self.workers:
            self.stop(worker)
            with contextlib.suppress(OSError):
                remove_instance(read_instance_id(worker.data_dir))
        self.api.stop()


def start_build(server: Server, service: str, tag: str) -> str:
    body = {
        "branch": "main",
        "overrides": {
            "buildArguments": {"ROUND": tag},
            "docker": {"dockerfileContents": DOCKERFILE},
        },
    }
    with server.client() as c:
        r = c.post(f"/v1/projects/{PROJECT}/services/{service}/build", json=body)
        r.raise_for_status()
        return str(r.json()["data"]["id"])


def wait_all(server: Server, builds: list[tuple[str, str]], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    pending = list(builds)
    with server.client() as c:
        while pending:
            service, build_id = pending[0]
            data = c.get(f"/v1/projects/{PROJECT}/services/{service}/build/{build_id}").json()
            if data["data"]["concluded"]:
                if data["data"]["status"] != "SUCCESS":
                    raise RuntimeError(f"build {build_id} ended {data['data']['status']}")
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"builds did not conclude: {pending}")
            time.sleep(0.1)


def latencies(database_url: str, build_ids: list[str]) -> tuple[list[float], list[float]]:
    """Per build: request → claim, and request → the worker's first log line (seconds)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT b.id, EXTRACT(EPOCH FROM b.started_at - b.created_at),
                   EXTRACT(EPOCH FROM (SELECT min(l.ts) FROM build_logs l
                     WHERE l.build_id = b.id AND l.line LIKE 'Build %%') - b.created_at)
            FROM builds b WHERE b.id = ANY(%s)
            """,
            (build_ids,),
        ).fetchall()
    return [float(r[1]) for r in rows], [float(r[2]) for r in rows]


def attempts(database_url: str) -> dict[int, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT attempt, count(*) FROM builds GROUP BY attempt").fetchall()
    return {int(a): int(n) for a, n in rows}


def main(opts: Options) -> dict[str, Any]:
    rounds = opts.runs(full=5, quick=2)
    paced_n = 20 if not opts.quick else 6
    burst_n = 8 if not opts.quick else 4
    name = f"shipyard_bench_scale_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with workspace("scale") as root:
            repo = make_sample_repo(root / "repo", blob_bytes=1024)
            fleet = Fleet(root / "fleet", url)
            try:
                return run(fleet, repo.url, opts, rounds, paced_n, burst_n, url)
            finally:
                fleet.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(
    fleet: Fleet, repo_url: str, opts: Options, rounds: int, paced_n: int, burst_n: int, url: str
) -> dict[str, Any]:
    started = time.time()
    server = fleet.api
    with server.client() as c:
        c.post("/v1/projects", json={"name": PROJECT}).raise_for_status()
    for service in SERVICES:
        with server.client() as c:
            r = c.post(
                f"/v1/projects/{PROJECT}/services/build",
                json={
                    "name": service,
                    "vcsData": {"projectUrl": repo_url, "projectType": "self-hosted"},
                },
            )
            r.raise_for_status()
    for worker in fleet.workers:
        fleet.start(worker)
    # Warm-up: each worker's sandbox for the project (user, disk, store) is made once.
    warm = [(s, start_build(server, s, f"warm-{s}")) for s in SERVICES]
    wait_all(server, warm)

    log(f"dispatch latency: {paced_n} builds one at a time, 2 idle workers")
    paced: list[str] = []
    for i in range(paced_n):
        service = SERVICES[i % len(SERVICES)]
        build_id = start_build(server, service, f"paced-{i}")
        wait_all(server, [(service, build_id)])
        paced.append(build_id)
    claim_s, first_line_s = latencies(url, paced)

    log(f"throughput: {burst_n} builds at once, 1 vs 2 workers, {rounds} rounds")
    one: list[float] = []
    two: list[float] = []
    for r in range(rounds):
        order = ("one", "two") if r % 2 == 0 else ("two", "one")
        for side in order:
            if side == "one":
                fleet.stop(fleet.workers[1])
            elif fleet.workers[1].proc is None:
                fleet.start(fleet.workers[1])
            began = time.monotonic()
            burst = [
                (
                    SERVICES[i % len(SERVICES)],
                    start_build(server, SERVICES[i % len(SERVICES)], f"{side}-{r}-{i}"),
                )
                for i in range(burst_n)
            ]
            wait_all(server, burst)
            took = time.monotonic() - began
            (one if side == "one" else two).append(took)
            log(f"round {r + 1}: {side} worker(s): {burst_n} builds in {took:.1f} s")
    ratios = [a / b for a, b in zip(one, two, strict=True)]
    runs = attempts(url)
    result = {
        "name": "scale",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "params": {"rounds": rounds, "paced": paced_n, "burst": burst_n, "workers": 2},
        "title": "10. Scale-out workers: dispatch latency, first log line, 1 vs 2 workers",
        "machine": machine_info(),
        "figures": [
            figure(
                "dispatch",
                "request → claimed (STARTING), idle fleet of 2 workers",
                [x * 1000 for x in claim_s],
                unit="ms",
                target=("<=", 1000),
                context=f"over {len(claim_s)} builds: p50 {percentile(claim_s, 50) * 1000:.0f} "
                f"ms, p99 {percentile(claim_s, 99) * 1000:.0f} ms",
            ),
            figure(
                "first_log_line",
                "request → the worker's first log line",
                [x * 1000 for x in first_line_s],
                unit="ms",
                context=f"p50 {percentile(first_line_s, 50) * 1000:.0f} ms, "
                f"p99 {percentile(first_line_s, 99) * 1000:.0f} ms",
            ),
            figure(
                "throughput_1_vs_2",
                f"time for {burst_n} builds: 1 worker / 2 workers (1 slot each)",
                ratios,
                target=(">=", 1.3),
                context=f"1 worker {fmt_s(one)}, 2 workers {fmt_s(two)}; both on this "
                "machine's 2 cores",
            ),
        ],
        "raw": {
            "claim_s": [round(x, 4) for x in claim_s],
            "first_line_s": [round(x, 4) for x in first_line_s],
            "one_worker_s": [round(x, 2) for x in one],
            "two_workers_s": [round(x, 2) for x in two],
            "one_worker": summary(one),
            "two_workers": summary(two),
            "attempts": runs,
        },
    }
    write_result("scale", opts, result)
    return result
