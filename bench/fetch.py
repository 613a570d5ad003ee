"""Benchmark 3: source fetch time on a repository with 20 commits vs one with 2 000 commits,
same tree (same files, same sizes), through Shipyard's own fetch (``fetch_source``: what the
CLONING stage runs) over ``file://`` (git's upload-pack, as with a real server).

The tree is 200 files of random (incompressible) content; every later commit rewrites an
8 KiB CHANGELOG, so the 2 000-commit history holds ~16 MB more than the 20-commit one. A
fetch whose cost followed history would show it. Rounds alternate which repository goes
first; ratios are paired per round (2 000 / 20).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    GIT_ENV,
    Options,
    figure,
    fmt_s,
    git,
    log,
    machine_info,
    paired_ratios,
    random_bytes,
    workspace,
    write_result,
)
from shipyard.builds.relevant_commit import PathRules
from shipyard.pipeline.source_git import fetch_source

CHANGELOG_BYTES = 8 * 1024


def make_repo(bare: Path, commits: int, files: int, file_bytes: int) -> str:
    """A bare repository of ``commits`` commits made with git fast-import; returns the tip."""
    git(bare.parent, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=bare, env=GIT_ENV, stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    out = proc.stdin
    mark = 0

    def blob(content: bytes) -> int:
        nonlocal mark
        mark += 1
        out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(content)) + content + b"\n")
        return mark

    def commit(number: int, changes: list[tuple[str, int]], parent: int | None) -> int:
        nonlocal mark
        mark += 1
        message = f"commit {number}\n".encode()
        out.write(b"commit refs/heads/main\nmark :%d\n" % mark)
        out.write(b"committer bench <bench@example.invalid> %d +0000\n" % (1700000000 + number))
        out.write(b"data %d\n" % len(message) + message)
        if parent is not None:
            out.write(b"from :%d\n" % parent)
        for path, blob_mark in changes:
            out.write(f"M 100644 :{blob_mark} {path}\n".encode())
        out.write(b"\n")
        return mark

    tree = [
        (f"src/file{i:03d}.bin", blob(random_bytes(1000 + i, file_bytes))) for i in range(files)
    ]
    tip = commit(1, [*tree, ("CHANGELOG", blob(random_bytes(0, CHANGELOG_BYTES)))], None)
    for n in range(2, commits + 1):
        tip = commit(n, [("CHANGELOG", blob(random_bytes(n, CHANGELOG_BYTES)))], tip)
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    return git(bare, "rev-parse", "refs/heads/main")


def fetch_once(url: str, dest: Path, mode: str, sha: str) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    kwargs: dict[str, Any] = {"sha": None, "branch": "main", "pull_request_id": None, "rules": None}
    if mode == "sha":
        kwargs["sha"] = sha
    elif mode == "rules":
        kwargs["rules"] = PathRules(("docs/**",), False)
    t0 = time.perf_counter()
    fetched = fetch_source(
        url, dest, on_line=lambda _l: None, cancel=threading.Event(), timeout_s=300,
        allowed_local_roots=(Path(tempfile.gettempdir()),), **kwargs,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if fetched.sha != sha:
        raise RuntimeError(f"fetched {fetched.sha}, expected {sha}")
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


MODES = {
    "branch": ("start-build by branch (the default: one commit, depth 1)", ("<=", 1.2)),
    "sha": ("start-build by sha (git fetch --depth 1 <sha>)", ("<=", 1.2)),
    "rules": ("branch with pathIgnoreRules (history walk, depth 50)", None),
}


def run(opts: Options) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    rounds = opts.runs(7, 2)
    files, file_bytes = (50, 40 * 1024) if opts.quick else (200, 100 * 1024)
    samples: dict[str, dict[str, list[float]]] = {m: {"20": [], "2000": []} for m in MODES}
    with workspace("fetch") as root:
        repos: dict[str, tuple[str, str]] = {}
        for commits in (20, 2000):
            bare = root / f"repo-{commits}.git"
            t0 = time.perf_counter()
            tip = make_repo(bare, commits, files, file_bytes)
            log(f"repo with {commits} commits made in {time.perf_counter() - t0:.1f} s")
            repos[str(commits)] = (f"file://{bare}", tip)
        sizes = {
            k: int(subprocess.run(["du", "-sb", v[0].removeprefix("file://")],
                                  capture_output=True, text=True).stdout.split()[0])
            for k, v in repos.items()
        }  # fmt: skip
        # One untimed fetch each: page cache and git's own start-up are then warm for both.
        for url, tip in repos.values():
            fetch_once(url, root / "warmup", "branch", tip)
        for i in range(rounds):
            for j, mode in enumerate(MODES):
                order = ("20", "2000") if (i + j) % 2 == 0 else ("2000", "20")
                for key in order:
                    url, tip = repos[key]
                    samples[mode][key].append(fetch_once(url, root / "dest", mode, tip))
            log(
                f"round {i + 1}/{rounds}: "
                + ", ".join(
                    f"{m} {samples[m]['20'][-1]:.2f}/{samples[m]['2000'][-1]:.2f} s" for m in MODES
                )
            )
    figures = []
    for mode, (label, target) in MODES.items():
        figures.append(
            figure(
                f"history_{mode}",
                f"fetch, 2 000 / 20 commits: {label}",
                paired_ratios(samples[mode]["2000"], samples[mode]["20"]),
                target=target,
                context=f"2 000: {fmt_s(samples[mode]['2000'])}, 20: {fmt_s(samples[mode]['20'])}",
            )
        )
    return {
        "name": "fetch",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "params": {
            "rounds": rounds,
            "files": files,
            "file_bytes": file_bytes,
            "changelog_bytes": CHANGELOG_BYTES,
            "repo_bytes_on_disk": sizes,
        },
        "figures": figures,
        "samples": samples,
    }


def main(opts: Options) -> dict[str, Any]:
    result = run(opts)
    write_result("fetch", opts, result)
    return result
