"""Benchmarks 1 (end-to-end overhead) and 2 (cache): the same commit of the sample app built

(a) by a shell pipeline of the raw tools — ``git fetch --depth 1`` + ``buildah bud`` +
    ``buildah push`` with exactly the flags Shipyard passes (``Buildah.bud_argv``), against
    its own fresh buildah store — and
(b) through Shipyard's API (``POST …/build`` → polled ``GET …/build/{id}`` shows SUCCESS),
    on a fresh ``shipyard up`` (fresh store, fresh embedded registry).

Both push to the same (per-round, fresh) embedded registry. Every round starts from new
stores, so a and b are both cold; a and b alternate which goes first. Ratios are paired
per round (b_i / a_i), then summarised as median (min–max) over the rounds.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    Options,
    SampleRepo,
    Server,
    base_images_store,
    create_service,
    figure,
    fmt_s,
    git,
    log,
    machine_info,
    make_sample_repo,
    paired_ratios,
    seed_base_image,
    start_server,
    store_under,
    summary,
    workspace,
    write_result,
)
from shipyard.pipeline.builder import Buildah, BuildSpec, unmount_under
from shipyard.pipeline.source_git import fetch_source
from shipyard.sandbox.launcher import Launcher
from shipyard.sandbox.sandbox import default_root
from shipyard.sandbox.users import BuildUsers

PROJECT, SERVICE = "bench", "app"
STEPS = ("cold", "warm", "warm_args", "late")
# A client polling every 50 ms costs the server ~4 ms of CPU a poll, which on this 2-core
# machine slowed the cold buildah step by ~0.3 s (measured: bud ratio 1.09 at 50 ms, 0.93
# at 500 ms). So poll gently and take SUCCESS time from the server's own log clock.
POLL_S = 0.25


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class RawPipeline:
    """(a): one bash script per build, its own store, same buildah flags as Shipyard.

    ``rootless`` (default): buildah runs as an unprivileged user of its own with a store it
    owns, as Shipyard runs every build (the same ``Buildah`` argv, launcher included), so the
    ratio is Shipyard's own overhead. ``rootless=False``: buildah as root, as Shipyard ran
    builds before the sandbox (``SHIPYARD_BENCH_RAW_ROOT=1``): the ratio then includes what
    the sandbox costs."""

    def __init__(
        self, root: Path, repo: SampleRepo, registry: str, authfile: Path, *, rootless: bool = True
    ) -> None:
        self.repo = repo
        self.registry = registry
        self.count = 0
        self.users: BuildUsers | None = None
        self.owner: tuple[int, int] | None = None
        env: dict[str, str] = {}
        if rootless:
            self.users = BuildUsers(f"bench{secrets.token_hex(3)}")
            user = self.users.for_project("raw")
            self.owner = (user.uid, user.gid)
            root = default_root(self.users.instance_id)  # reachable by the user (o+x)
            root.mkdir(parents=True, mode=0o711)
            for sub in ("store", "home", "home/run"):
                (root / sub).mkdir(mode=0o700)
                os.chown(root / sub, user.uid, user.gid)
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(root / "home"),
                   "XDG_RUNTIME_DIR": str(root / "home/run"), "USER": user.name}  # fmt: skip
            shutil.copy2(authfile, root / "auth.json")
            os.chown(root / "auth.json", user.uid, user.gid)
            authfile = root / "auth.json"
        self.root = root
        self.env = env
        self.authfile = authfile
        self.store = store_under(root / "store") if rootless else store_under(root)
        # The embedded registry is plain HTTP: Shipyard then pulls with --tls-verify=false.
        self.buildah = Buildah(
            self.store,
            pull_tls_verify=False,
            launcher=Launcher(*self.owner) if self.owner else None,
            env=env or None,
        )

    def seed(self) -> None:
        seed_base_image(self.store, self.root / "seed", self.buildah)

    def close(self) -> None:
        if self.users is not None:
            unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            self.users.remove_all()

    def script(self, sha: str, build_args: dict[str, str] | None = None) -> tuple[str, Path]:
        self.count += 1
        work = self.root / f"build-{self.count}"
        src, tmp = work / "src", work / "tmp"
        digest = tmp / "image.digest"
        tag = f"{self.registry}/raw/app:{sha}"
        spec = BuildSpec(
            context_dir=src,
            dockerfile=src / "Dockerfile",
            display_dockerfile="/Dockerfile",
            tag=tag,
            tmpdir=tmp,
            network="none",
            build_args=build_args or {},
        )
        bud = shlex.join(self.buildah.bud_argv(spec))
        # Build-argument values travel in the environment, as Shipyard passes them.
        exports = "".join(
            f"export {k}={shlex.quote(v)}\n" for k, v in self.buildah.bud_env(spec).items()
        )
        push = shlex.join(
            [
                *self.buildah._argv("push", "--tls-verify=false", "--digestfile", str(digest)),
                "--authfile", str(self.authfile),
                *self.buildah._retry_args(),
                "--",
            ]
        )  # fmt: skip
        q = shlex.quote
        chown = ""
        if self.owner is not None:  # Shipyard hands the checkout to the build user too
            chown = f"chown -R {self.owner[0]}:{self.owner[1]} {q(str(work))}\n"
        user_env = "".join(f"export {k}={q(v)}\n" for k, v in self.env.items())
        text = f"""set -euo pipefail
mark() {{ echo "MARK $1 $(date +%s.%N)"; }}
mark start
mkdir -p {q(str(src))} {q(str(tmp))}
cd {q(str(src))}
git init -q .
git fetch -q --depth 1 {q(self.repo.url)} {q(sha)}
git checkout -q --detach {q(sha)}
{chown}mark fetched
{user_env}export TMPDIR={q(str(tmp))}
{exports}{bud} > {q(str(work / "bud.log"))} 2>&1
mark built
{push} {q(tag)} {q("docker://" + tag)} > {q(str(work / "push.log"))} 2>&1
mark pushed
"""
        return text, work

    def build(self, sha: str, build_args: dict[str, str] | None = None) -> dict[str, Any]:
        text, work = self.script(sha, build_args)
        t0 = time.perf_counter()
        out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=600)
        total = time.perf_counter() - t0
        if out.returncode != 0:
            logs = "".join(p.read_text() for p in work.glob("*.log"))
            raise RuntimeError(f"raw pipeline failed: {out.stderr}\n{logs[-3000:]}")
        marks = {
            parts[1]: float(parts[2])
            for line in out.stdout.splitlines()
            if (parts := line.split()) and parts[0] == "MARK"
        }
        shutil.rmtree(work / "src", ignore_errors=True)
        return {
            "to_success_s": total,
            "fetch_s": marks["fetched"] - marks["start"],
            "bud_s": marks["built"] - marks["fetched"],
            "push_s": marks["pushed"] - marks["built"],
        }


def shipyard_build(
    server: Server, sha: str, build_args: dict[str, str] | None = None
) -> dict[str, Any]:
    """(b): request → SUCCESS as a client sees it, plus where the time went (build logs)."""
    base = f"/v1/projects/{PROJECT}/services/{SERVICE}"
    body: dict[str, Any] = {"sha": sha, "branch": "main"}
    if build_args:
        body["overrides"] = {"buildArguments": build_args}
    with server.client() as c:
        wall0 = time.time()
        t0 = time.perf_counter()
        r = c.post(f"{base}/build", json=body)
        r.raise_for_status()
        build_id = r.json()["data"]["id"]
        deadline = t0 + 600
        while True:
            data = c.get(f"{base}/build/{build_id}").json()["data"]
            if data["concluded"]:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"build {build_id} did not conclude: {data}")
            time.sleep(POLL_S)
        total = time.perf_counter() - t0
        if data["status"] != "SUCCESS":
            lines = c.get(f"{base}/build-logs", params={"buildId": build_id, "lineLimit": 200})
            raise RuntimeError(
                f"build {build_id} ended {data['status']}: {data['message']}\n"
                + "\n".join(x["log"] for x in lines.json()["data"][-30:])
            )
        lines = c.get(f"{base}/build-logs", params={"buildId": build_id, "lineLimit": 10000})
        rows = lines.json()["data"]
    marks: dict[str, float] = {}
    for row in rows:
        text = row["log"]
        for key, prefix in (
            ("started", "Build "),
            ("cloning", "==> cloning"),
            ("reusing", "Reusing the image"),
            ("building", "==> building"),
            ("uploading", "==> uploading"),
            ("pushed", "Pushed "),
            ("done", "Image available at"),
        ):
            if key not in marks and text.startswith(prefix):
                marks[key] = _ts(row["ts"])

    def span(a: str, b: str) -> float | None:
        return marks[b] - marks[a] if a in marks and b in marks else None

    reused = "reusing" in marks
    # Log timestamps have millisecond resolution and come from the same clock.
    return {
        # request → the build's last line ("Image available at …", written just before the
        # SUCCESS row is committed), on the same clock: what the figures use.
        "to_success_s": marks["done"] - wall0,
        # request → SUCCESS seen by this client, polling every POLL_S (context only).
        "observed_s": total,
        "reused": reused,
        "queue_s": marks["started"] - wall0,
        "setup_s": span("started", "cloning"),
        # A reused build: ls-remote (branch only) + reuse lookup + registry check.
        "reuse_check_s": span("cloning", "reusing") if reused else None,
        "fetch_s": span("cloning", "building"),
        "bud_s": span("building", "uploading"),
        "push_s": span("uploading", "pushed"),
        "conclude_s": marks["done"] - marks["pushed" if not reused else "reusing"],
        "log_lines": len(rows),
    }


def _fetch_fresh(repo: SampleRepo, sha: str, dest: Path) -> float:
    """What CLONING does today: a new repository, one commit fetched by sha."""
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    fetch_source(repo.url, dest, sha=sha, branch="main", pull_request_id=None, rules=None,
                 on_line=lambda _l: None, cancel=threading.Event(), timeout_s=300,
                 allowed_local_roots=(Path(tempfile.gettempdir()),))  # fmt: skip
    elapsed = time.perf_counter() - t0
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


def _fetch_mirror(repo: SampleRepo, sha: str, mirror: Path, dest: Path) -> float:
    """PROTOTYPE of a persistent per-service mirror (DESIGN.md's next speed-up): the mirror
    already holds the previous commit; fetch only what is new, check out a worktree."""
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    git(mirror, "fetch", "-q", "--no-tags", repo.url, "+refs/heads/*:refs/heads/*")
    git(mirror, "worktree", "add", "-q", "--detach", str(dest), sha)
    elapsed = time.perf_counter() - t0
    git(mirror, "worktree", "remove", "--force", str(dest))
    return elapsed


def _what_if(root: Path, repo: SampleRepo, server: Server) -> dict[str, float]:
    mirror = root / "mirror.git"
    # A mirror as it would be after the cold build of ``sha`` (not timed): history up to sha.
    git(root, "init", "-q", "--bare", str(mirror))
    git(mirror, "fetch", "-q", "--depth", "1", repo.url, f"{repo.sha}:refs/heads/main")
    fresh = _fetch_fresh(repo, repo.late_sha, root / "wt-fresh")
    mirrored = _fetch_mirror(repo, repo.late_sha, mirror, root / "wt-mirror")
    return {"fetch_fresh_s": fresh,
            "fetch_mirror_s": mirrored}  # fmt: skip


def _fresh_round(root: Path, repo: SampleRepo) -> tuple[RawPipeline, Server]:
    data = root / "shipyard" / "data"
    seed_base_image(base_images_store(data), root / "shipyard" / "seed")
    server = start_server(data)
    raw: RawPipeline | None = None
    try:
        create_service(server, PROJECT, SERVICE, repo.url)
        raw = RawPipeline(
            root / "raw", repo, server.registry, server.authfile(root / "auth.json"),
            rootless=os.environ.get("SHIPYARD_BENCH_RAW_ROOT") != "1",
        )  # fmt: skip
        raw.seed()
    except BaseException:
        # Never leave a server or build users behind a failed round.
        server.stop()
        if raw is not None:
            raw.close()
        raise
    return raw, server


def run_series(opts: Options, *, warm: bool) -> dict[str, Any]:
    rounds = opts.runs(5, 1)
    blob = (2 if opts.quick else 20) * 1024 * 1024
    # warm: the same commit again (Shipyard reuses the earlier image if it can);
    # warm_args: the same commit with a build argument the Dockerfile does not use, new each
    # round, so nothing can be reused: the layer-cache path (fetch + all-hit bud + push);
    # late: a child commit changing only a file the last two steps read.
    steps = [("cold", "sha")] + (
        [("warm", "sha"), ("warm_args", "sha"), ("late", "late_sha")] if warm else []
    )
    series_started = time.time()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        step: {"raw": [], "shipyard": []} for step, _ in steps
    }
    whatif: list[dict[str, float]] = []
    with workspace("builds") as root:
        repo = make_sample_repo(root / "repos", blob)
        for i in range(rounds):
            round_root = root / f"round-{i}"
            raw, server = _fresh_round(round_root, repo)
            try:
                for j, (step, which) in enumerate(steps):
                    sha = getattr(repo, which)
                    order = ("raw", "shipyard") if (i + j) % 2 == 0 else ("shipyard", "raw")
                    args = {"BENCH_UNUSED": f"round-{i}"} if step == "warm_args" else None
                    for side in order:
                        if side == "raw":
                            result = raw.build(sha, args)
                        else:
                            result = shipyard_build(server, sha, args)
                        samples[step][side].append(result)
                    log(
                        f"round {i + 1}/{rounds} {step}: raw "
                        f"{samples[step]['raw'][-1]['to_success_s']:.2f} s, shipyard "
                        f"{samples[step]['shipyard'][-1]['to_success_s']:.2f} s"
                    )
                if warm:
                    whatif.append(_what_if(round_root, repo, server))
            finally:
                server.stop()
                raw.close()
                unmount_under(round_root)
                shutil.rmtree(round_root, ignore_errors=True)
    return {"rounds": rounds, "blob_bytes": blob, "samples": samples, "what_if": whatif,
            "started": series_started, "duration_s": round(time.time() - series_started, 1),
            "warm": warm}  # fmt: skip


def _totals(samples: dict[str, Any], step: str, side: str) -> list[float]:
    return [s["to_success_s"] for s in samples[step][side]]


def _phases(samples: dict[str, Any], step: str, side: str) -> dict[str, Any]:
    rows = samples[step][side]
    keys = [k for k in rows[0] if k.endswith("_s")]
    out: dict[str, Any] = {k: summary([r[k] for r in rows if r[k] is not None]) for k in keys}
    if "reused" in rows[0]:
        out["reused"] = sum(1 for r in rows if r["reused"])
    return out


def run_overhead(opts: Options, series: dict[str, Any] | None = None) -> dict[str, Any]:
    """``series``: reuse the cold builds of a cache run (same procedure) instead of new ones."""
    info = machine_info()
    series = series or run_series(opts, warm=False)
    s = series["samples"]
    raw_cold, sy_cold = _totals(s, "cold", "raw"), _totals(s, "cold", "shipyard")
    figures = [
        figure(
            "cold_overhead",
            "cold build through the API / raw git+buildah pipeline",
            paired_ratios(sy_cold, raw_cold),
            target=("<=", 1.10),
            context=f"shipyard {fmt_s(sy_cold)} (as seen by a client polling every "
            f"{POLL_S:g} s: {fmt_s([b['observed_s'] for b in s['cold']['shipyard']])}), "
            f"raw {fmt_s(raw_cold)}",
        )
    ]
    return {
        "name": "overhead",
        "quick": opts.quick,
        "started": series["started"],
        "duration_s": series["duration_s"],
        "machine": info,
        "params": {
            "rounds": series["rounds"],
            "blob_bytes": series["blob_bytes"],
            "shared_with_cache_run": series["warm"],
        },
        "figures": figures,
        "phases": {side: _phases(s, "cold", side) for side in ("raw", "shipyard")},
        "samples": s,
    }


def run_cache(opts: Options, series: dict[str, Any] | None = None) -> dict[str, Any]:
    info = machine_info()
    series = series or run_series(opts, warm=True)
    s = series["samples"]
    t = {(step, side): _totals(s, step, side) for step in STEPS for side in ("raw", "shipyard")}
    reused = sum(1 for b in s["warm"]["shipyard"] if b["reused"])
    figures = [
        figure(
            "unchanged_rebuild",
            "Shipyard: rebuild of the same commit / its cold build",
            paired_ratios(t["warm", "shipyard"], t["cold", "shipyard"]),
            target=("<=", 0.25),
            context=f"warm {fmt_s(t['warm', 'shipyard'])}, cold {fmt_s(t['cold', 'shipyard'])}; "
            f"earlier image reused in {reused} of {len(s['warm']['shipyard'])} rounds",
        ),
        figure(
            "unchanged_rebuild_layer_cache",
            "Shipyard: same commit, new unused build argument (no reuse: layer cache) / cold",
            paired_ratios(t["warm_args", "shipyard"], t["cold", "shipyard"]),
            context=f"{fmt_s(t['warm_args', 'shipyard'])}",
        ),
        figure(
            "late_change_rebuild",
            "Shipyard: commit changing one late-stage file / cold build",
            paired_ratios(t["late", "shipyard"], t["cold", "shipyard"]),
            target=("<=", 0.35),  # issue 13
            context=f"late {fmt_s(t['late', 'shipyard'])}",
        ),
        figure(
            "raw_unchanged_rebuild",
            "raw pipeline: same commit on a warm store / its cold build (reference)",
            paired_ratios(t["warm", "raw"], t["cold", "raw"]),
            context=f"warm {fmt_s(t['warm', 'raw'])}, cold {fmt_s(t['cold', 'raw'])}",
        ),
        figure(
            "raw_late_change_rebuild",
            "raw pipeline: late-stage change on a warm store / its cold build (reference)",
            paired_ratios(t["late", "raw"], t["cold", "raw"]),
            context=f"late {fmt_s(t['late', 'raw'])}",
        ),
        figure(
            "layer_cache_overhead",
            "same commit + unused build arg on a warm store: Shipyard / raw pipeline",
            paired_ratios(t["warm_args", "shipyard"], t["warm_args", "raw"]),
        ),
    ]
    w = series["what_if"]
    if w:
        sl = s["late"]["shipyard"]
        # Late change with a per-service mirror: the measured build with the fresh fetch
        # replaced by the mirror's incremental fetch + worktree.
        projected_late = [
            b["to_success_s"] - b["fetch_s"] + x["fetch_mirror_s"]
            for b, x in zip(sl, w, strict=True)
        ]
        figures += [
            figure(
                "whatif_fetch_mirror",
                "PROTOTYPE: late-change source fetch, persistent mirror / fresh fetch (today)",
                paired_ratios([x["fetch_mirror_s"] for x in w], [x["fetch_fresh_s"] for x in w]),
                context=f"mirror {fmt_s([x['fetch_mirror_s'] for x in w])}, "
                f"fresh {fmt_s([x['fetch_fresh_s'] for x in w])}",
            ),
            figure(
                "projected_late_change_rebuild",
                "PROJECTED: late-change rebuild with a per-service mirror / cold build",
                paired_ratios(projected_late, t["cold", "shipyard"]),
                context=f"projected {fmt_s(projected_late)}",
            ),
        ]
    return {
        "name": "cache",
        "quick": opts.quick,
        "started": series["started"],
        "duration_s": series["duration_s"],
        "machine": info,
        "params": {"rounds": series["rounds"], "blob_bytes": series["blob_bytes"]},
        "figures": figures,
        "phases": {
            f"{step}/{side}": _phases(s, step, side)
            for step in STEPS
            for side in ("raw", "shipyard")
        },
        "what_if": w,
        "samples": s,
    }


def main_overhead(opts: Options) -> dict[str, Any]:
    result = run_overhead(opts)
    write_result("overhead", opts, result)
    return result


def main_cache(opts: Options) -> dict[str, Any]:
    result = run_cache(opts)
    write_result("cache", opts, result)
    return result


def main_both(opts: Options) -> list[dict[str, Any]]:
    """``overhead`` and ``cache`` from one series of rounds: the cold builds of the cache
    rounds are exactly the overhead benchmark's procedure, so they are not run twice."""
    series = run_series(opts, warm=True)
    cache = run_cache(opts, series)
    overhead = run_overhead(opts, series)
    write_result("cache", opts, cache)
    write_result("overhead", opts, overhead)
    return [overhead, cache]
