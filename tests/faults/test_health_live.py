"""Readiness of a live ``shipyard up`` (issue 11, item 8): ready once the executor has
started, 503 naming the registry while the embedded registry is frozen (SIGSTOP: it does not
exit, so its supervisor does not restart it), ready again when it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.live import remove_sandbox, start_server, stop_server

pytestmark = pytest.mark.slow

WAIT_READY = Path(__file__).resolve().parents[2] / "deploy" / "wait-ready.py"


def _wait_ready(url: str) -> subprocess.CompletedProcess[str]:
    """deploy/wait-ready.py --once, as systemd's ExecStartPost runs it (stdlib python)."""
    port = url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, str(WAIT_READY), "--once"],
        env={"SHIPYARD_PORT": port, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ready(url: str, want: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/readyz", timeout=15)
        if r.status_code == want:
            body: dict[str, Any] = r.json()
            return body
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def test_readyz_follows_the_registry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, live = start_server(data)
    try:
        body = _ready(live.url, 200)
        assert set(body["checks"]) == {"database", "registry", "builder"}, body
        assert httpx.get(f"{live.url}/healthz", timeout=5).json() == {"status": "ok"}
        assert _wait_ready(live.url).returncode == 0
        pid = int((data / "registry.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            body = _ready(live.url, 503)
            assert body["failing"] == ["registry"], body
            assert "not answering" in body["checks"]["registry"]["message"]
            assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
            waited = _wait_ready(live.url)
            assert waited.returncode == 1 and "registry: the embedded registry" in waited.stderr
        finally:
            os.kill(pid, signal.SIGCONT)
        _ready(live.url, 200)
    finally:
        stop_server(proc)
        remove_sandbox(data)
