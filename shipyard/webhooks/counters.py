"""Deliveries refused before anything is recorded (401s), counted per provider and reason
for ``/metrics`` (``shipyard_webhook_rejected_total``)."""

from __future__ import annotations

import threading
from collections import Counter


class Rejections:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, provider: str, reason: str) -> None:
        with self._lock:
            self._counts[(provider, reason)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)
