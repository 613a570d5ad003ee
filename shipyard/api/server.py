"""Serving the app with a graceful shutdown (issue 11: restarts and SIGTERM).

On the first SIGTERM/SIGINT the executor stops claiming builds at once; running builds get
``SHIPYARD_SHUTDOWN_GRACE_S`` to finish while the API (and the registry token endpoint their
pushes need) stays up; then the rest are stopped through the abort path and end ``CRASHED``;
live log streams are ended; only then does uvicorn close. A second signal exits at once.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

from shipyard.api.deps import AppState

log = logging.getLogger(__name__)

# How long open connections (a client in the middle of a request) may hold the exit after
# the drain; streams end by themselves once ``closing`` is set.
CONNECTIONS_GRACE_S = 5


class ShipyardServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self._state = state
        self._draining = threading.Event()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining.is_set():
            # A second signal: stop now (the lifespan still stops what runs).
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        self._draining.set()
        self._captured_signals.append(sig)
        threading.Thread(target=self._drain, name="shipyard-drain", daemon=True).start()

    def _drain(self) -> None:
        grace = self._state.settings.shutdown_grace_s
        log.info("shutting down: no new builds start; running builds have %g s", grace)
        try:
            self._state.executor.drain(grace)
        except Exception:
            log.exception("draining the executor failed")
        finally:
            self._state.end_streams()
            self.should_exit = True


def serve(app: FastAPI, host: str, port: int) -> None:
    state: AppState = app.state.shipyard
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=CONNECTIONS_GRACE_S,
        proxy_headers=True,
        forwarded_allow_ips=state.settings.forwarded_allow_ips,
    )
    server = ShipyardServer(config, state)
    server.run()


__all__ = ["ShipyardServer", "serve"]
