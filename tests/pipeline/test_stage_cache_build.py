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


# A pull-request build records its stage; main's build (other files) must not take it.
# Each Dockerfile is one a hostile-tenant review found buildah reading differently from a
# plain split (quotes, two --from flags, a name two stages answer to).
POISON = {
    "quoted-source": 'FROM {b} AS build\nCOPY "payload" /p\nFROM {b} AS y\nCOPY --from=build /p /p\n',
    "double-from": (
        "FROM {b} AS a\nRUN echo a > /p\nFROM {b} AS b\nCOPY payload /p\n"
        "FROM {b} AS y\nCOPY --from=a --from=b /p /p\n"
    ),
    "duplicate-name": (
        "FROM {b} AS x\nRUN echo first > /p\nFROM {b} AS x\nCOPY payload /p\n"
        "FROM {b} AS y\nCOPY --from=x /p /p\n"
    ),
    "index-name": (
        "FROM {b} AS 1\nRUN echo first > /p\nFROM {b}\nCOPY payload /p\n"
        "FROM {b} AS y\nCOPY --from=1 /p /p\n"
    ),
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_pull_request_build_cannot_fill_mains_stage(
    buildah: Buildah, busybox_base: str, tmp_path: Path, case: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    base_id = stored_image_id(buildah.store.root, busybox_base)

    def build(name: str) -> list[str]:
        text = POISON[case].format(b=busybox_base) + (
            f'FROM {busybox_base}\nCOPY --from=y /p /p\nRUN echo "{name} OUT=$(cat /p)"\n'
        )
        checked = check_dockerfile(text, context_dir=ctx, display_path="Dockerfile")
        plan = stage_cache.plan(
            text, checked, context_dir=ctx, ignore_files=[ctx / ".dockerignore"],
            bases={busybox_base: f"id:{base_id}"}, triggered=(), build_args={}, target=None,
            store_root=buildah.store.root, workload="svc", fingerprint=fingerprint,
        )  # fmt: skip
        lines: list[str] = []
        recorder = stage_cache.Recorder(plan, lines.append)
        spec = BuildSpec(
            context_dir=ctx, tag=f"localhost/app:{name}", display_dockerfile="Dockerfile",
            dockerfile=stage_cache.write_new(tmp_path / f"Dockerfile.{name}", plan.text),
            tmpdir=tmp_path / f"tmp-{name}", timestamp=TIMESTAMP, pull="never",
        )  # fmt: skip
        buildah.bud(spec, on_line=recorder, cancel=threading.Event(), timeout_s=300)
        for found_id, tag in stage_cache.to_record(plan, recorder, buildah.store.root):
            assert buildah.tag(found_id, tag)
        return lines

    (ctx / "payload").write_text("from-the-pull-request\n")
    assert any(line.endswith("pr OUT=from-the-pull-request") for line in build("pr"))
    (ctx / "payload").write_text("mains-own\n")
    lines = build("main")
    assert any(line.endswith("main OUT=mains-own") for line in lines), lines
