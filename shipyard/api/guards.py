"""In-process caps on what one project (or everyone, for webhooks) may hold at once: slots
taken for the life of a request or a stream and always given back (SECURITY.md, "API
hardening"). They count in this API process; several API processes each allow the cap."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shipyard.builds.errors import TooManyRequests


class Slots:
    """Counted slots per key; ``take`` refuses past ``limit`` with a 429."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def held(self, key: str) -> int:
        with self._lock:
            return self._held[key]

    def acquire(self, key: str, limit: int, refusal: TooManyRequests) -> None:
        with self._lock:
            if self._held[key] >= limit:
                raise refusal
            self._held[key] += 1

    def release(self, key: str) -> None:
        with self._lock:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    @contextmanager
    def take(self, key: str, limit: int, refusal: TooManyRequests) -> Iterator[None]:
        self.acquire(key, limit, refusal)
        try:
            yield
        finally:
            self.release(key)


def slots(app: object, name: str) -> Slots:
    """The app's one ``Slots`` called ``name`` (made on first use)."""
    state = app.state  # type: ignore[attr-defined]
    with _MAKING:
        found: Slots | None = getattr(state, f"slots_{name}", None)
        if found is None:
            found = Slots()
            setattr(state, f"slots_{name}", found)
    return found


_MAKING = threading.Lock()


class Held:
    """One slot a request may take, given back once (by whoever ends the request or its
    stream first)."""

    def __init__(self, pool: Slots, key: str) -> None:
        self._pool, self._key = pool, key
        self._held = False
        self._lock = threading.Lock()
        self.handed_over = False  # a streaming response gives it back when it ends

    def take(self, limit: int, refusal: TooManyRequests) -> None:
        with self._lock:
            if not self._held:
                self._pool.acquire(self._key, limit, refusal)
                self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._pool.release(self._key)


def log_stream_refusal(project_id: str, limit: int) -> TooManyRequests:
    return TooManyRequests(
        f"project '{project_id}' already has {limit} live log streams open "
        "(SHIPYARD_MAX_LOG_STREAMS_PER_PROJECT); close one, or read the logs with the range "
        "endpoint (…/build-logs)",
        {"maxLogStreams": limit},
        retry_after_s=5,
    )


class GuardedStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends."""

    def __init__(self, held: Held, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        held.handed_over = True
        self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._held.release()


async def log_stream_slot(request: Request, projectId: str) -> AsyncIterator[Held]:
    """A live log stream's slot of its project (SHIPYARD_MAX_LOG_STREAMS_PER_PROJECT, 429
    past it). Declared after the caller: an unauthenticated request is refused first."""
    state = request.app.state.shipyard
    held = Held(slots(request.app, "log_streams"), projectId)
    limit = state.settings.max_log_streams_per_project
    held.take(limit, log_stream_refusal(projectId, limit))
    try:
        yield held
    finally:
        if not held.handed_over:  # the handler failed: no stream holds it
            held.release()


LogStreamSlot = Annotated[Held, Depends(log_stream_slot)]
