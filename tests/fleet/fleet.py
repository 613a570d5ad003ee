"""A live scale-out fleet for tests and ``bench scale``: ``shipyard up`` with
SHIPYARD_EXECUTOR=procrastinate on a scratch PostgreSQL database, and ``shipyard worker``
processes on loopback, each with its own data dir (and base image store)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shipyard.pipeline.builder import unmount_under
from shipyard.pipeline.net import free_port
from tests.helpers.live import BIN, LiveServer, remove_sandbox, seed_base_image, start_server

# Short clocks so a lost worker is noticed in seconds (defaults: 30 s lease, 10 s sweep).
FLEET_ENV = {
    "SHIPYARD_EXECUTOR": "procrastinate",
    "SHIPYARD_MAX_CONCURRENT_BUILDS": "4",
    "SHIPYARD_LEASE_S": "6",
    "SHIPYARD_HEARTBEAT_S": "1",
    "SHIPYARD_WORKER_SWEEP_S": "1",
    "SHIPYARD_WORKER_WATCHDOG_S": "3",
    "SHIPYARD_WORKER_GRACE_S": "1",
    "SHIPYARD_SHUTDOWN_GRACE_S": "1",
}


@dataclass
class WorkerProc:
    data_dir: Path
    log_path: Path
    metrics_port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass
class Fleet:
    root: Path
    database_url: str
    secret_key: str
    api: LiveServer | None = None
    api_proc: subprocess.Popen[bytes] | None = None
    workers: list[WorkerProc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **FLEET_ENV,
            "SHIPYARD_DATABASE_URL": self.database_url,
            "SHIPYARD_SECRET_KEY": self.secret_key,
            **extra,
        }

    def start_api(self, *args: str, port: int | None = None, **extra: str) -> LiveServer:
        data = self.root / "api" / "data"
        data.mkdir(parents=True, exist_ok=True)
        if args:
            seed_base_image(data)  # --with-worker builds here
        self.api_proc, self.api = start_server(data, args=args, port=port, **self.env(**extra))
        return self.api

    def add_worker(self, concurrency: int = 1, **extra: str) -> WorkerProc:
        index = len(self.workers)
        data = self.root / f"worker{index}" / "data"
        seed_base_image(data)
        worker = WorkerProc(data, data.parent / "worker.log", free_port(), extra)
        self.workers.append(worker)
        self.start_worker(worker, concurrency)
        return worker

    def start_worker(self, worker: WorkerProc, concurrency: int = 1) -> None:
        assert self.api is not None
        api_port = self.api.url.rsplit(":", 1)[1]
        registry_port = self.api.registry.rsplit(":", 1)[1]
        env = {
            **os.environ,
            **self.env(),
            "SHIPYARD_DATA_DIR": str(worker.data_dir),
            # The API's token endpoint and embedded registry (builds reach both on loopback).
            "SHIPYARD_PORT": api_port,
            "SHIPYARD_REGISTRY_PORT": registry_port,
            "SHIPYARD_ALLOW_PRIVATE_URLS": "true",
            "SHIPYARD_ALLOWED_LOCAL_ROOTS": tempfile.gettempdir(),
            **worker.env,
        }
        with worker.log_path.open("ab") as log:
            worker.proc = subprocess.Popen(
                [str(BIN / "shipyard"), "worker", f"--concurrency={concurrency}",
                 f"--metrics-port={worker.metrics_port}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # up once its /metrics answers and its row is listed
            try:
                metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=1)
                if metrics.status_code == 200 and self.worker_ids(worker.pid):
                    return
            except httpx.HTTPError:
                pass
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shipyard worker failed:\n{worker.log_path.read_text()}")
            time.sleep(0.2)

    def listed(self) -> list[dict[str, Any]]:
        assert self.api is not None
        with self.api.client() as c:
            return list(c.get("/v1/workers").json()["data"]["workers"])

    def worker_ids(self, pid: int) -> list[str]:
        return [w["id"] for w in self.listed() if w.get("pid") == pid]

    def stop_worker(
        self, worker: WorkerProc, sig: int = signal.SIGTERM, timeout: float = 30
    ) -> int:
        """Signal the worker process (not its builds' groups); its exit code."""
        assert worker.proc is not None
        if worker.proc.poll() is None:
            worker.proc.send_signal(sig)
        return worker.proc.wait(timeout=timeout)

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
                try:
                    worker.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.proc.pid, signal.SIGKILL)
                    worker.proc.wait()
        if self.api_proc is not None and self.api_proc.poll() is None:
            os.killpg(self.api_proc.pid, signal.SIGTERM)
            try:
                self.api_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.api_proc.pid, signal.SIGKILL)
                self.api_proc.wait()
        for data in [w.data_dir for w in self.workers] + [self.root / "api" / "data"]:
            unmount_under(data / "base-images" / "root")
            remove_sandbox(data)


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


class TcpProxy:
    """A loopback TCP proxy (to PostgreSQL) that can be cut: every connection through it is
    closed and new ones are closed at once — a worker that lost the database."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def close(self) -> None:
        self.cut()
        self._server.close()
