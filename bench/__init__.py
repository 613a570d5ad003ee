"""Shipyard's benchmarks: ``make bench`` (= ``.venv/bin/python -m bench``) runs them all;
``python -m bench <name> [<name> …]`` runs some; ``--quick`` is a smoke check (fewer rounds,
smaller sizes) whose results go to ``bench/results/quick/`` so the committed figures stay.

Every figure is a ratio measured side by side in the same run (the two sides interleaved,
paired per round), reported as median (min–max) over >= 5 rounds: the machine has 2 cores
and is shared, so absolute times are noise. Results: ``bench/results/<name>.json``; the
summary table in ``docs/benchmarks.md`` is regenerated from them.
"""

from __future__ import annotations

# name -> (module, function, what it measures); ``overhead`` and ``cache`` share their cold
# builds when both run (see ``bench.builds.main_both``).
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "overhead": ("bench.builds", "main_overhead",
                 "1. cold build through the API vs the raw git + buildah pipeline"),
    "cache": ("bench.builds", "main_cache",
              "2. unchanged / late-change rebuild vs cold build"),
    "fetch": ("bench.fetch", "main", "3. source fetch, 2 000 vs 20 commits, same tree"),
    "api": ("bench.api", "main", "4. POST …/build req/s and latency vs a bare endpoint"),
    "queue": ("bench.queue_drain", "main", "5. queue drain and enqueue→start latency"),
    "profile": ("bench.profiling", "main", "6. where the time goes; prototypes of the fixes"),
    "restart": ("bench.restart", "main", "7. restart after kill -9 mid-build; build concluded"),
    "load": ("bench.load", "main", "8. SQLite at 16/32/64 clients with builds running"),
    "fresh": ("bench.fresh_worker", "main",
              "9. fresh worker's first build of a known service vs cold (registry cache)"),
    "scale": ("bench.scale", "main",
              "10. scale-out workers: dispatch latency, first log line, 1 vs 2 workers"),
}  # fmt: skip
