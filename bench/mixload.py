"""A mixed API load (issue 11, "SQLite holds load"): N concurrent clients, each in a closed
loop for a bounded time, doing what users and CI do while builds run — start a build, list
builds, get one, read its log. Shared by ``bench load`` and ``tests/faults/test_sqlite_load.py``.

Every response is counted by status; a 5xx or a transport error (timeout, reset) is a
failure. Latencies are kept per operation for p50 / p99. Loopback only.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import percentile

OPERATIONS = ("start", "list", "get", "logs")
# Out of 20 requests: 1 start, 6 lists, 7 gets, 6 log reads.
WEIGHTS = (1, 6, 7, 6)
REQUEST_TIMEOUT_S = 30.0


@dataclass
class MixResult:
    clients: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {o: [] for o in OPERATIONS})
    started: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # the first few failures, for the report

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """5xx answers plus requests that got no answer at all."""
        return sum(n for s, n in self.statuses.items() if not s.isdigit() or int(s) >= 500)

    def all_ms(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]

    def summary(self) -> dict[str, Any]:
        every = self.all_ms()
        per_op = {
            op: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50), 1) if v else None,
                "p99_ms": round(percentile(v, 99), 1) if v else None,
            }
            for op, v in self.latencies.items()
        }
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "requests": self.requests,
            "rps": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors": self.server_errors,
            "p50_ms": round(percentile(every, 50), 1) if every else None,
            "p99_ms": round(percentile(every, 99), 1) if every else None,
            "max_ms": round(max(every), 1) if every else None,
            "per_operation": per_op,
            "builds_started": len(self.started),
            "failures": self.examples,
        }


async def _mix(
    url: str,
    tokens: list[str],
    service: str,
    clients: int,
    seconds: float,
    start_body: Callable[[int], dict[str, Any]],
    known: list[str],
    seed: int,
) -> MixResult:
    result = MixResult(clients, seconds)
    ids = list(known)
    counter = itertools.count()
    # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s), so
    # a request never races the server closing its connection (a ReadError, not the server's).
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0
    )
    deadline = time.monotonic() + seconds

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as http:

        async def one(rng: random.Random, headers: dict[str, str]) -> None:
            op = rng.choices(OPERATIONS, WEIGHTS)[0]
            if not ids:
                op = "start"
            build = rng.choice(ids[-50:]) if ids else ""
            began = time.perf_counter()
            try:
                if op == "start":
                    r = await http.post(
                        f"{service}/build", json=start_body(next(counter)), headers=headers
                    )
                    if r.status_code == 200:
                        ids.append(r.json()["data"]["id"])
                        result.started.append(ids[-1])
                elif op == "list":
                    r = await http.get(f"{service}/build", params={"per_page": 20}, headers=headers)
                elif op == "get":
                    r = await http.get(f"{service}/build/{build}", headers=headers)
                else:
                    r = await http.get(
                        f"{service}/build-logs",
                        params={"buildId": build, "lineLimit": 200},
                        headers=headers,
                    )
                key = str(r.status_code)
                failed = r.status_code >= 500
                detail = r.text[:200]
            except httpx.HTTPError as exc:
                key, failed, detail = type(exc).__name__, True, str(exc)[:200]
            result.statuses[key] += 1
            if failed:
                if len(result.examples) < 10:
                    result.examples.append(f"{op}: {key} {detail}")
            else:
                result.latencies[op].append((time.perf_counter() - began) * 1000)

        async def client(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            while time.monotonic() < deadline:
                await one(rng, headers)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return result


def run_mix(
    url: str,
    tokens: list[str],
    service: str,
    *,
    clients: int,
    seconds: float,
    start_body: Callable[[int], dict[str, Any]],
    known: list[str] | None = None,
    seed: int = 0,
) -> MixResult:
    """``service``: the path of a service (``/v1/projects/p/services/s``); clients take
    ``tokens`` in turn (a stored API token exercises authentication through the database,
    the admin token does not)."""
    return asyncio.run(_mix(url, tokens, service, clients, seconds, start_body, known or [], seed))
