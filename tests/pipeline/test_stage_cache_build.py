"""The stage cache with real buildah builds: a stage taken from the store gives the very
image a build without any cache gives (same id, so same layers and history), and the
image buildah names at the end of a stage is the one recorded."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from shipyard.pipeline import stage_cache
from shipyard.pipeline.builder import Buildah, BuildSpec, stored_image_id
from shipyard.sandbox.dockerfile import check_dockerfile

pytestmark = pytest.mark.slow
TIMESTAMP = 1_700_000_000  # as Shipyard passes the commit's time: a reproducible image


def fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def test_a_taken_stage_gives_the_image_an_uncached_build_gives(
    buildah: Buildah, busybox_base: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "deps").mkdir(parents=True)
    (ctx / "deps" / "a.txt").write_text("dep a\n")
    (ctx / "late.txt").write_text("late 1\n")
    text = f"""\
FROM {busybox_base} AS deps
WORKDIR /src
COPY deps/ /src/deps/
RUN cat /src/deps/* > /deps.out
ENV STAGE=deps

FROM {busybox_base}
COPY --from=deps /deps.out /deps.out
COPY late.txt /late.txt
RUN cat /deps.out /late.txt > /all.txt
"""
    base_id = stored_image_id(buildah.store.root, busybox_base)
    assert base_id is not None

    def build(name: str, *, layers: bool = True) -> tuple[str, stage_cache.StagePlan, list[str]]:
        checked = check_dockerfile(text, context_dir=ctx, display_path="Dockerfile")
        plan = stage_cache.plan(
            text, checked, context_dir=ctx, ignore_files=[ctx / ".dockerignore"],
            bases={busybox_base: f"id:{base_id}"}, triggered=(), build_args={}, target=None,
            store_root=buildah.store.root, workload="svc", fingerprint=fingerprint,
        ) if layers else stage_cache.StagePlan(text)  # fmt: skip
        dockerfile = stage_cache.write_new(tmp_path / f"Dockerfile.{name}", plan.text)
        lines: list[str] = []
        recorder = stage_cache.Recorder(plan, lines.append)
        spec = BuildSpec(
            context_dir=ctx, dockerfile=dockerfile, display_dockerfile="Dockerfile",
            tag=f"localhost/app:{name}", tmpdir=tmp_path / f"tmp-{name}", layers=layers,
            timestamp=TIMESTAMP, pull="never",
        )  # fmt: skip
        image_id = buildah.bud(spec, on_line=recorder, cancel=threading.Event(), timeout_s=300)
        for found_id, tag in stage_cache.to_record(plan, recorder, buildah.store.root):
            assert buildah.tag(found_id, tag)
        return image_id, plan, lines

    first_id, first, _ = build("first")
    assert list(first.record) == [0] and first.hits == {}
    recorded = stored_image_id(buildah.store.root, first.record[0])
    assert recorded is not None

    (ctx / "late.txt").write_text("late 2\n")
    taken_id, taken, lines = build("taken")
    assert taken.hits == {0: first.record[0]}, taken.skipped
    assert not any("COPY deps/" in line for line in lines), lines
    uncached_id, _, lines = build("uncached", layers=False)
    assert any("COPY deps/" in line for line in lines)
    assert taken_id == uncached_id != first_id
