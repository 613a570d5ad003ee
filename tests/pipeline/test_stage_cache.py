"""The stage cache's rules (``shipyard.pipeline.stage_cache``): what a stage's key covers,
which stages are never taken, how a taken stage is written, and how buildah's output names
the image that ends a stage. The real builds are test_stage_cache_build.py and
tests/e2e/test_stage_cache_live.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from shipyard.pipeline import stage_cache
from shipyard.pipeline.stage_cache import REPOSITORY, Recorder, StagePlan
from shipyard.sandbox.dockerfile import check_dockerfile

BASE = "localhost/base:1"
TWO_STAGES = f"""\
ARG V=1
FROM {BASE} AS deps
WORKDIR /src
COPY deps/ /src/deps/
RUN cat /src/deps/* > /deps.out

FROM {BASE}
COPY --from=deps /deps.out /deps.out
COPY late.txt /late.txt
"""


def fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "deps").mkdir(parents=True)
    (ctx / "deps" / "a.txt").write_text("a\n")
    (ctx / "late.txt").write_text("late\n")
    return ctx


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "overlay-images").mkdir(parents=True)
    (root / "overlay-images" / "images.json").write_text("[]")
    return root


def plan(
    context: Path,
    store: Path,
    text: str = TWO_STAGES,
    *,
    bases: dict[str, str] | None = None,
    triggered: tuple[str, ...] = (),
    build_args: dict[str, str] | None = None,
    target: str | None = None,
) -> StagePlan:
    checked = check_dockerfile(text, context_dir=context, display_path="Dockerfile",
                               build_args=build_args)  # fmt: skip
    return stage_cache.plan(
        text, checked, context_dir=context, ignore_files=[context / ".dockerignore"],
        bases={BASE: "id:base1"} if bases is None else bases, triggered=triggered,
        build_args=build_args or {}, target=target, store_root=store, workload="svc",
        fingerprint=fingerprint,
    )  # fmt: skip


def key(context: Path, store: Path, **kwargs: object) -> str:
    made = plan(context, store, **kwargs)  # type: ignore[arg-type]
    assert list(made.record) == [0], made.skipped
    return made.record[0].rsplit(":", 1)[1]


def remember(store: Path, name: str, image_id: str = "f" * 64) -> None:
    index = store / "overlay-images" / "images.json"
    entries = json.loads(index.read_text())
    entries.append({"id": image_id, "names": [name]})
    index.write_text(json.dumps(entries))


def test_only_earlier_stages_are_keyed_and_recorded_under_the_workload(
    context: Path, store: Path
) -> None:
    made = plan(context, store)
    assert made.hits == {} and made.text == TWO_STAGES
    assert list(made.record) == [0]
    assert made.record[0].startswith(f"{REPOSITORY}/svc/s0:")


def test_what_the_stage_does_not_read_leaves_its_key(context: Path, store: Path) -> None:
    before = key(context, store)
    (context / "late.txt").write_text("changed\n")
    (context / "unrelated.txt").write_text("new\n")
    assert key(context, store) == before
    later = TWO_STAGES.replace("COPY late.txt /late.txt", "COPY late.txt /elsewhere.txt")
    assert key(context, store, text=later) == before


@pytest.mark.parametrize(
    "change",
    ["file", "mode", "new file", "link", "ignore file", "argument", "base", "text", "preamble"],
)
def test_every_input_of_the_stage_changes_its_key(context: Path, store: Path, change: str) -> None:
    before = key(context, store)
    kwargs: dict[str, object] = {}
    if change == "file":
        (context / "deps" / "a.txt").write_text("b\n")
    elif change == "mode":
        os.chmod(context / "deps" / "a.txt", 0o755)
    elif change == "new file":
        (context / "deps" / "b.txt").write_text("b\n")
    elif change == "link":
        (context / "deps" / "l").symlink_to("a.txt")
    elif change == "ignore file":
        (context / ".dockerignore").write_text("deps/a.txt\n")
    elif change == "argument":
        kwargs["build_args"] = {"ANY": "1"}
    elif change == "base":
        kwargs["bases"] = {BASE: "id:base2"}
    elif change == "text":
        kwargs["text"] = TWO_STAGES.replace("WORKDIR /src", "WORKDIR /src2")
    elif change == "preamble":
        kwargs["text"] = TWO_STAGES.replace("ARG V=1", "ARG V=2")
    assert key(context, store, **kwargs) != before


def test_a_wildcard_source_keys_the_whole_context(context: Path, store: Path) -> None:
    text = TWO_STAGES.replace("COPY deps/ /src/deps/", "COPY deps/*.txt /src/deps/")
    before = key(context, store, text=text)
    (context / "late.txt").write_text("changed\n")
    assert key(context, store, text=text) != before


def test_a_stage_in_the_store_is_taken_whole(context: Path, store: Path) -> None:
    first = plan(context, store)
    remember(store, first.record[0])
    again = plan(context, store)
    assert again.hits == {0: first.record[0]} and again.record == {}
    assert again.text == (
        f"ARG V=1\nFROM {first.record[0]} AS deps\n"
        f"FROM {BASE}\nCOPY --from=deps /deps.out /deps.out\nCOPY late.txt /late.txt\n"
    )
    assert any("stage deps is unchanged" in line for line in again.describe())
    # Any workload of the project with the same stage finds it: the key is what counts.
    assert plan(context, store).hits == again.hits


def test_a_chain_of_stages_is_keyed_through_its_links(context: Path, store: Path) -> None:
    text = f"""\
FROM {BASE} AS one
COPY deps/ /deps/
FROM one AS two
RUN ls /deps > /list
FROM {BASE}
COPY --from=two /list /list
"""
    made = plan(context, store, text=text)
    assert sorted(made.record) == [0, 1]
    (context / "deps" / "a.txt").write_text("other\n")
    changed = plan(context, store, text=text)
    assert changed.record[0] != made.record[0] and changed.record[1] != made.record[1]


def test_copy_from_an_image_is_keyed_by_its_identity(context: Path, store: Path) -> None:
    text = f"FROM {BASE} AS a\nCOPY --from=localhost/other:1 /x /x\nFROM {BASE}\n"
    bases = {BASE: "id:base1", "localhost/other:1": "id:o1"}
    one = plan(context, store, text=text, bases=bases).record[0]
    two = plan(context, store, text=text, bases={**bases, "localhost/other:1": "id:o2"}).record[0]
    assert one != two


@pytest.mark.parametrize(
    ("stage", "why"),
    [
        ("ONBUILD RUN true", "ONBUILD"),
        ("RUN --mount=type=bind,target=/c true", "mounts files"),
        ("RUN --mount=target=/c true", "mounts files"),
        ("RUN --mount=type=cache,target=/c,from=other true", "mounts files"),
        ("ADD https://example.com/x /x", "URL"),
    ],
)
def test_stages_that_read_what_no_key_covers_are_not_taken(
    context: Path, store: Path, stage: str, why: str
) -> None:
    text = f"FROM {BASE} AS other\nFROM {BASE} AS deps\n{stage}\nFROM {BASE}\n"
    try:
        made = plan(context, store, text=text)
    except Exception:  # the sandbox's check refused it first: nothing to cache either
        return
    assert 1 not in made.record and why in made.skipped[1]


def test_cache_and_secret_mounts_are_keyed_by_text(context: Path, store: Path) -> None:
    text = (
        f"FROM {BASE} AS deps\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s true\n"
        f"FROM {BASE}\n"
    )
    assert list(plan(context, store, text=text).record) == [0]


def test_a_base_with_onbuild_triggers_or_no_identity_is_not_taken(
    context: Path, store: Path
) -> None:
    assert plan(context, store, triggered=(BASE,)).record == {}
    assert plan(context, store, bases={}).record == {}


def test_a_stage_reading_an_untaken_stage_is_not_taken(context: Path, store: Path) -> None:
    text = f"""\
FROM {BASE} AS one
ONBUILD RUN true
FROM {BASE} AS two
COPY --from=one /x /x
FROM {BASE}
"""
    made = plan(context, store, text=text)
    assert made.record == {} and "stage one" in made.skipped[1]


def test_a_source_leading_out_of_the_context_is_not_taken(
    context: Path, store: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside").mkdir()
    (context / "deps" / "a.txt").unlink()
    (context / "deps").rmdir()
    (context / "deps").symlink_to(tmp_path / "outside")
    made = plan(context, store)
    assert made.record == {} and "outside the context" in made.skipped[0]


def test_the_target_stage_and_those_after_it_are_not_taken(context: Path, store: Path) -> None:
    text = f"FROM {BASE} AS a\nRUN true\nFROM {BASE} AS b\nRUN true\nFROM {BASE} AS c\nRUN true\n"
    assert list(plan(context, store, text=text, target="b").record) == [0]
    assert list(plan(context, store, text=text, target="a").record) == []
    assert list(plan(context, store, text=text).record) == [0, 1]


def test_the_recorder_takes_the_last_image_line_of_each_wanted_stage(
    context: Path, store: Path
) -> None:
    made = plan(context, store)
    seen: list[str] = []
    recorder = Recorder(made, seen.append)
    lines = [
        "[1/2] STEP 1/3: FROM localhost/base:1 AS deps",
        "[1/2] STEP 2/3: WORKDIR /src",
        "--> Using cache " + "a" * 64,
        "--> aaaaaaaaaaa",
        "[1/2] STEP 3/3: RUN cat /src/deps/* > /deps.out",
        "--> bbbbbbbbbbb",
        "[2/2] STEP 1/3: FROM localhost/base:1",
        "--> ccccccccccc",  # the final stage's: not wanted
    ]
    for line in lines:
        recorder(line)
    assert seen == lines
    assert recorder.ends == {0: "bbbbbbbbbbb"}
    remember(store, "localhost/x:1", "b" * 64)
    remember(store, "localhost/y:1", "c" * 64)
    assert stage_cache.to_record(made, recorder, store) == [("b" * 64, made.record[0])]


def test_an_ambiguous_or_unknown_image_line_records_nothing(context: Path, store: Path) -> None:
    made = plan(context, store)
    recorder = Recorder(made, lambda _line: None)
    recorder("[1/2] STEP 1/1: FROM localhost/base:1 AS deps")
    recorder("--> ddddddddddd")
    remember(store, "localhost/x:1", "d" * 63 + "1")
    remember(store, "localhost/y:1", "d" * 63 + "2")
    assert stage_cache.to_record(made, recorder, store) == []


def test_garbage_collection_keeps_the_newest_entries_of_each_stage() -> None:
    entries = [(f"id{i}", [f"{REPOSITORY}/svc/s0:k{i}"], float(i)) for i in range(5)] + [
        ("other", [f"{REPOSITORY}/svc/s1:k9", "localhost/app:1"], 1.0)
    ]
    assert stage_cache.stale_names(entries) == [f"{REPOSITORY}/svc/s0:k0",
                                                f"{REPOSITORY}/svc/s0:k1"]  # fmt: skip


def test_the_rewritten_dockerfile_is_a_new_file(tmp_path: Path) -> None:
    path = stage_cache.write_new(tmp_path / "Dockerfile.stage-cache", "FROM x\n")
    assert path.read_text() == "FROM x\n" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(FileExistsError):
        stage_cache.write_new(path, "FROM y\n")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        stage_cache.write_new(tmp_path / "link", "FROM y\n")
    assert not (tmp_path / "target").exists()


def test_a_later_stage_cannot_name_the_image_of_an_earlier_one(context: Path, store: Path) -> None:
    """A RUN of the final stage (its text is in no earlier stage's key) prints buildah's
    lines for stage 1 and an image it chose: stage 1's record keeps buildah's own image."""
    made = plan(context, store)
    recorder = Recorder(made, lambda _line: None)
    for line in [
        "[1/2] STEP 1/3: FROM localhost/base:1 AS deps",
        "[1/2] STEP 3/3: RUN cat /src/deps/* > /deps.out",
        "--> 11111111111",
        "[2/2] STEP 1/3: FROM localhost/base:1",
        "[2/2] STEP 3/3: RUN echo '[1/2] STEP 3/3: x'; echo '--> 22222222222'",
        "[1/2] STEP 3/3: x",
        "--> 22222222222",
    ]:
        recorder(line)
    assert recorder.ends == {0: "11111111111"}


def test_an_earlier_stage_cannot_name_the_image_of_a_later_one(context: Path, store: Path) -> None:
    """A RUN of stage 1 jumps ahead to stage 2's lines: buildah's own lines of stage 2 come
    after it, and the last one counts."""
    text = f"FROM {BASE} AS one\nRUN true\nFROM {BASE} AS two\nRUN true\nFROM {BASE}\n"
    made = plan(context, store, text=text)
    assert sorted(made.record) == [0, 1]
    recorder = Recorder(made, lambda _line: None)
    for line in [
        "[1/3] STEP 1/2: FROM localhost/base:1 AS one",
        "[1/3] STEP 2/2: RUN true",
        "[2/3] STEP 2/2: RUN true",  # printed by stage one's RUN
        "--> 33333333333",
        "--> 44444444444",  # buildah: stage one's image
        "[2/3] STEP 1/2: FROM localhost/base:1 AS two",
        "[2/3] STEP 2/2: RUN true",
        "--> 55555555555",
        "[3/3] STEP 1/1: FROM localhost/base:1",
    ]:
        recorder(line)
    assert recorder.ends[1] == "55555555555"


def test_a_stage_that_is_only_its_from_line_is_not_recorded_but_keys_its_readers(
    context: Path, store: Path
) -> None:
    text = f"FROM {BASE} AS alias\nFROM alias AS built\nRUN true\nFROM {BASE}\n"
    made = plan(context, store, text=text)
    assert list(made.record) == [1]
    changed = plan(context, store, text=text, bases={BASE: "id:other"})
    assert changed.record[1] != made.record[1]


# Found by a hostile-tenant review: words buildah reads differently from a plain split.


@pytest.mark.parametrize(
    "line", ['COPY "app.py" /app.py', "COPY 'app.py' /app.py", 'COPY ["\'app.py\'", "/app.py"]']
)
def test_a_quoted_source_keys_the_whole_context(context: Path, store: Path, line: str) -> None:
    """buildah strips the quotes (imagebuilder's ProcessWord): the file is what it copies."""
    (context / "app.py").write_text("main\n")
    text = f"FROM {BASE} AS build\n{line}\nFROM {BASE}\nCOPY --from=build /app.py /app.py\n"
    before = key(context, store, text=text)
    (context / "app.py").write_text("changed by a pull request\n")
    assert key(context, store, text=text) != before


def test_a_copy_with_two_from_flags_is_not_taken(context: Path, store: Path) -> None:
    """buildah takes the last ``--from``: which one counts is not guessed at."""
    text = (
        f"FROM {BASE} AS a\nRUN true\nFROM {BASE} AS b\nCOPY deps/ /p\n"
        f"FROM {BASE} AS c\nCOPY --from=a --from=b /p /p\nFROM {BASE}\n"
    )
    made = plan(context, store, text=text)
    assert sorted(made.record) == [0, 1] and "more than one --from" in made.skipped[2]


@pytest.mark.parametrize(
    "stages",
    [
        f"FROM {BASE} AS x\nRUN true\nFROM {BASE} AS x\nCOPY deps/ /p\n",
        f"FROM {BASE} AS 1\nRUN true\nFROM {BASE}\nCOPY deps/ /p\n",  # the second one is "1"
    ],
)
def test_a_stage_name_two_stages_answer_to_is_not_resolved(
    context: Path, store: Path, stages: str
) -> None:
    ref = "x" if "AS x" in stages else "1"
    text = f"{stages}FROM {BASE} AS y\nCOPY --from={ref} /p /p\nFROM {BASE}\n"
    made = plan(context, store, text=text)
    assert 2 not in made.record and "more than one stage" in made.skipped[2]


def test_an_add_whose_source_is_a_variable_is_not_taken(context: Path, store: Path) -> None:
    text = f"FROM {BASE} AS dl\nARG URL=https://example.com/i.sh\nADD $URL /i.sh\nFROM {BASE}\n"
    made = plan(context, store, text=text)
    assert made.record == {} and "URL" in made.skipped[0]


def test_links_to_one_directory_are_walked_once(
    context: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        (context / f"l{i}").symlink_to(".")
    entries = 0
    real = stage_cache._ContextHasher._entry

    def counting(self: stage_cache._ContextHasher, *args: object) -> None:
        nonlocal entries
        entries += 1
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(stage_cache._ContextHasher, "_entry", counting)
    text = f"FROM {BASE} AS a\nCOPY {' '.join(f'l{i}' for i in range(20))} /x/\nFROM {BASE}\n"
    assert list(plan(context, store, text=text).record) == [0]
    assert entries < 40  # one walk of the context (~24 entries), not 20


def test_keying_is_bounded_by_entries_and_time(
    context: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        (context / "deps" / f"empty{i}").touch()
    monkeypatch.setattr(stage_cache, "MAX_HASHED_BYTES", 20 * 4096)
    made = plan(context, store)
    assert made.record == {} and "too large" in made.skipped[0]
    monkeypatch.setattr(stage_cache, "MAX_HASHED_BYTES", 1 << 30)
    monkeypatch.setattr(stage_cache, "MAX_HASHING_S", -1.0)
    assert "too large" in plan(context, store).skipped[0]
