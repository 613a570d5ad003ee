"""``python -m bench [--quick] [name …]``: run benchmarks, write bench/results/<name>.json,
regenerate the summary table in docs/benchmarks.md (full runs only)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench import BENCHMARKS
from bench.common import Options, log
from bench.report import update_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of: {', '.join(BENCHMARKS)} (default all)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: fewer rounds, smaller sizes; results in results/quick/")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, _, what) in BENCHMARKS.items():
            print(f"{name:9s} {what}")
        return 0
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    opts = Options(quick=args.quick)
    t0 = time.time()
    failed: list[str] = []
    todo = list(dict.fromkeys(names))
    if "overhead" in todo and "cache" in todo:
        todo.remove("cache")
        todo[todo.index("overhead")] = "overhead+cache"
    for name in todo:
        log(f"=== {name}{' (quick)' if opts.quick else ''}")
        started = time.time()
        try:
            if name == "overhead+cache":
                from bench.builds import main_both

                results = main_both(opts)
            else:
                module, function, _ = BENCHMARKS[name]
                results = [getattr(importlib.import_module(module), function)(opts)]
        except Exception as exc:  # one failing benchmark must not lose the others' figures
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        for result in results:
            for f in result.get("figures", []):
                v = f["value"]
                met = {True: "met", False: "MISSED", None: ""}[f["met"]]
                log(f"{result['name']}: {f['label']}: {v['median']} ({v['min']}–{v['max']}, "
                    f"n={v['n']}) {f['target'] or ''} {met}")  # fmt: skip
        log(f"=== {name} done in {time.time() - started:.0f} s")
    if not opts.quick:
        path = update_docs()
        log(f"summary table written to {path}")
    log(
        f"all done in {time.time() - t0:.0f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
