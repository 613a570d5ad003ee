"""Fresh-worker first build (issue 12, item 9): a worker with an empty buildah store builds a
known service, with the registry layer cache (``shipyard.pipeline.build_cache``), against
the cold build of the same service.

Each round: a fresh ``shipyard up`` (fresh store, fresh embedded registry), then
(1) cold: the service's first build (commit ``sha``), which also fills the registry cache;
(2) fresh, new commit: the project's store emptied, as a new worker's empty data dir has it
    (same database, same registry), then a child commit that changes only the file the last
    two steps read: the figure, target <= 0.6 x cold;
(3) fresh, same commit: store emptied again, ``sha`` with a build argument no ARG declares
    (so the earlier image cannot be reused and every step is a cache lookup): context.

``fresh_worker_round`` is the procedure; ``bench scale`` can run it against workers.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from bench.builds import PROJECT, SERVICE, shipyard_build
from bench.common import (
    Options,
    SampleRepo,
    Server,
    base_images_store,
    create_service,
    figure,
    fmt_s,
    log,
    machine_info,
    make_sample_repo,
    paired_ratios,
    seed_base_image,
    start_server,
    summary,
    workspace,
    write_result,
)
from shipyard.pipeline.builder import unmount_under
from shipyard.sandbox.layout import UserDirs
from shipyard.sandbox.sandbox import default_root, empty_store
from shipyard.sandbox.users import user_name
from shipyard.settings import read_instance_id

STEPS = ("cold", "fresh_new_commit", "fresh_same_commit")


def empty_project_store(server: Server, project: str) -> None:
    """The project's buildah store as a new worker has it (no build of it may run)."""
    instance = read_instance_id(server.data_dir)
    empty_store(UserDirs(default_root(instance) / user_name(instance, project)))


def fresh_worker_round(server: Server, repo: SampleRepo, tag: str) -> dict[str, dict[str, Any]]:
    """The three builds of one round on ``server`` (whose service is new)."""
    results: dict[str, dict[str, Any]] = {}
    for step, sha, args in (
        ("cold", repo.sha, None),
        ("fresh_new_commit", repo.late_sha, None),
        ("fresh_same_commit", repo.sha, {"BENCH_UNUSED": tag}),
    ):
        if step != "cold":
            empty_project_store(server, PROJECT)
        results[step] = {**shipyard_build(server, sha, args), **_cache_lines(server)}
    return results


def _cache_lines(server: Server) -> dict[str, int]:
    """How many steps the service's newest build took from the registry cache, from the
    store, and how many it had (from its log)."""
    base = f"/v1/projects/{PROJECT}/services/{SERVICE}"
    with server.client() as c:
        build_id = c.get(f"{base}/build", params={"per_page": 1}).json()["data"]["builds"][0]["id"]
        rows = c.get(f"{base}/build-logs", params={"buildId": build_id, "lineLimit": 10000})
    lines = [row["log"] for row in rows.json()["data"]]
    return {
        "pulled": sum(1 for line in lines if "Cache pulled from remote" in line),
        "hits": sum(1 for line in lines if "Using cache" in line),
        "steps": sum(1 for line in lines if "STEP " in line and "FROM " not in line),
    }


def run(opts: Options) -> dict[str, Any]:
    info = machine_info()
    rounds = opts.runs(5, 1)
    blob = (2 if opts.quick else 20) * 1024 * 1024
    samples: dict[str, list[dict[str, Any]]] = {step: [] for step in STEPS}
    started = time.time()
    with workspace("fresh-worker") as root:
        repo = make_sample_repo(root / "repos", blob)
        for i in range(rounds):
            round_root = root / f"round-{i}"
            data = round_root / "shipyard" / "data"
            seed_base_image(base_images_store(data), round_root / "shipyard" / "seed")
            # The registry cache as scale-out workers have it (off for the local executor).
            server = start_server(data, SHIPYARD_BUILD_CACHE_REGISTRY="true")
            try:
                create_service(server, PROJECT, SERVICE, repo.url)
                results = fresh_worker_round(server, repo, f"round-{i}")
            finally:
                server.stop()
                unmount_under(round_root)
                shutil.rmtree(round_root, ignore_errors=True)
            for step in STEPS:
                samples[step].append(results[step])
            log(
                f"round {i + 1}/{rounds}: cold {results['cold']['to_success_s']:.2f} s, fresh "
                f"worker new commit {results['fresh_new_commit']['to_success_s']:.2f} s, same "
                f"commit {results['fresh_same_commit']['to_success_s']:.2f} s"
            )
    t = {step: [s["to_success_s"] for s in samples[step]] for step in STEPS}
    figures = [
        figure(
            "fresh_worker_first_build",
            "fresh worker's first build of a known service (new commit, late change) / cold",
            paired_ratios(t["fresh_new_commit"], t["cold"]),
            target=("<=", 0.6),
            context=f"fresh worker {fmt_s(t['fresh_new_commit'])}, cold {fmt_s(t['cold'])}",
        ),
        figure(
            "fresh_worker_same_commit",
            "fresh worker, same commit + unused build argument (every step cacheable) / cold",
            paired_ratios(t["fresh_same_commit"], t["cold"]),
            context=f"{fmt_s(t['fresh_same_commit'])}; steps from the registry per round: "
            f"{[s['pulled'] for s in samples['fresh_same_commit']]} (new commit: "
            f"{[s['pulled'] for s in samples['fresh_new_commit']]}) of "
            f"{samples['cold'][0]['steps'] if samples['cold'] else '?'} steps",
        ),
    ]
    phases = {
        step: {
            key: summary([s[key] for s in samples[step] if s.get(key) is not None])
            for key in ("fetch_s", "bud_s", "push_s", "to_success_s")
        }
        for step in STEPS
    }
    return {
        "name": "fresh",
        "quick": opts.quick,
        "started": started,
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "params": {"rounds": rounds, "blob_bytes": blob},
        "figures": figures,
        "phases": phases,
        "samples": samples,
    }


def main(opts: Options) -> dict[str, Any]:
    result = run(opts)
    write_result("fresh", opts, result)
    return result
