"""In-process caps on what one project (or everyone, for webhooks) may hold at once: slots
taken for the life of a request or a stream and always given back (SECURITY.md, "API
hardening"). They count in this API process; several API processes each allow the cap."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

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
