"""The stage cache: a build stage whose inputs are unchanged is taken whole from the
project's store, so buildah does not re-check its steps one by one.

Why: buildah 1.28 checks a COPY step against its layer cache by performing the copy into a
working container and digesting the result. A rebuild whose change is late in the final
stage still re-copies and re-hashes everything the earlier stages copy (in the benchmark's
sample: ~0.5 s of a 1.3 s late-change rebuild, a 20 MB file copied twice). When every input
of such a stage is the same as in an earlier build, the image buildah would end the stage
with is already in the store: Shipyard names it there after that build, and the next build's
Dockerfile starts the stage ``FROM`` that image instead of repeating its steps.

Only stages other than the one the image is made of (the target, or the last stage) are
taken: the image's own history and base annotations stay exactly as buildah writes them.

A stage's key covers everything buildah's own layer cache could miss on, and more:

- the global ``ARG`` lines and the stage's text as buildah reads it — Shipyard's build-args
  key line (a keyed digest of the given ARG values) and secrets-key lines included;
- its base: the image's identity (local id or registry digest) or the earlier stage's key;
- each ``COPY/ADD --from``: that stage's key or that image's identity;
- every context path its ``COPY``/``ADD`` read: names, types, modes, bytes, link targets (the
  whole context when a source has a wildcard or a variable), and every ignore file.

The key is a keyed digest (``fingerprint``): build files and argument values cannot be
guessed from the tag it becomes. Not taken (buildah checks them as before): a stage with
ONBUILD, a base with ONBUILD triggers, a ``RUN --mount`` of type bind or ``from=`` (reads
files no key covers), ``ADD`` of a URL, a heredoc, a source outside the context, or a
context file that is not a file, directory or link.

Trust: an entry is recorded only by a build of the same project (its own store) whose stage
had the same key, i.e. the same text and inputs: the same cases in which buildah would reuse
that build's layers anyway. The image id is read from buildah's ``--> <id>`` line that ends
the stage; a RUN in that stage can print such a line, but it runs the code the key covers.

Entries are tags ``localhost/shipyard-stage-cache/<workload>/s<stage>:<key>``; garbage
collection keeps the newest few per stage (``stale_names``); a cache reset empties the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.pipeline.builder import stored_images
from shipyard.pipeline.process import LineSink
from shipyard.sandbox.dockerfile import DockerfilePlan, Instruction, Stage, instructions

REPOSITORY = "localhost/shipyard-stage-cache"
KEEP_PER_STAGE = 3  # entries garbage collection leaves per (workload, stage)
# A context larger than this is not hashed for the cache (buildah reads it anyway).
MAX_HASHED_BYTES = 1 << 30
_VERSION = b"shipyard stage cache v1\0"
# What buildah's word processing may change (wildcards, variables, escapes, quotes): such a
# source is keyed by the whole context, and an ADD with one is not taken (it may be a URL).
_GLOB = re.compile(r"[*?\[\\$'\"]")
# Every context entry costs at least this much of MAX_HASHED_BYTES (empty files and links
# cost time too), and keying stops after MAX_HASHING_S: the build goes on without the cache.
_ENTRY_COST = 4096
MAX_HASHING_S = 10.0
_STEP = re.compile(r"^\[(\d+)/\d+\] STEP \d+/\d+: ")
_COMMITTED = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})$")


class _NotCacheable(Exception):
    """The stage (or one it reads) cannot be keyed; the reason is for the log."""


@dataclass(frozen=True)
class StagePlan:
    text: str  # the Dockerfile buildah builds: hit stages reduced to their FROM line
    hits: Mapping[int, str] = field(default_factory=dict)  # stage index -> cached image
    record: Mapping[int, str] = field(default_factory=dict)  # stage index -> tag to record
    skipped: Mapping[int, str] = field(default_factory=dict)  # stage index -> why not keyed
    names: Mapping[int, str] = field(default_factory=dict)  # stage index -> display name

    def describe(self) -> list[str]:
        said = []
        for index in sorted(self.hits):
            said.append(
                f"Stage cache: stage {self.names[index]} is unchanged since an earlier build; "
                "its image is taken from the project's store (its steps are not re-checked)"
            )
        return said


def plan(
    text: str,
    dockerfile: DockerfilePlan,
    *,
    context_dir: Path,
    ignore_files: Iterable[Path],
    bases: Mapping[str, str],
    triggered: Iterable[str],
    build_args: Mapping[str, str],
    target: str | None,
    store_root: Path,
    workload: str,
    fingerprint: Callable[[object], str],
) -> StagePlan:
    """What to take from the cache for ``text`` (the Dockerfile as buildah will read it,
    with ``dockerfile`` its check's plan). ``bases``: every base image's identity, as
    recorded for reuse; ``triggered``: base images with ONBUILD triggers; ``build_args``:
    every argument buildah gets (the secrets key included), all of them in every key."""
    stages = dockerfile.stages
    final = len(stages) - 1
    if target:
        final = next((s.index for s in stages if s.name == target.lower()), final)
    if final < 1:
        return StagePlan(text)
    parsed = instructions(text)
    froms = [ins for ins in parsed if ins.cmd == "from"]
    if len(froms) != len(stages):
        return StagePlan(text)  # not read as the check read it: take nothing
    lines = text.split("\n")
    preamble = "\n".join(lines[: froms[0].line - 1])
    arguments = json.dumps(sorted(build_args.items()))
    hasher = _ContextHasher(context_dir, ignore_files)
    names = {s.index: s.name or str(s.index) for s in stages}
    keys: dict[int, str | None] = {}
    skipped: dict[int, str] = {}
    triggered = set(triggered)
    step_less: set[int] = set()
    for stage in stages[:final]:
        end = froms[stage.index + 1].line - 1 if stage.index + 1 < len(froms) else len(lines)
        body = [ins for ins in parsed if froms[stage.index].line < ins.line <= end]
        if not body:
            # Only its FROM line: nothing to take, and buildah prints no image for it; its
            # key still stands for it in the stages that read it.
            step_less.add(stage.index)
        try:
            material = _material(
                stage.index, stage.base, body, "\n".join(lines[froms[stage.index].line - 1 : end]),
                preamble + "\0" + arguments, stages, keys, bases, triggered, hasher,
            )  # fmt: skip
        except _NotCacheable as exc:
            keys[stage.index] = None
            skipped[stage.index] = str(exc)
            continue
        keys[stage.index] = fingerprint({"purpose": "stage cache", "material": material})
    known = _cached(store_root)
    hits: dict[int, str] = {}
    record: dict[int, str] = {}
    for index, key in keys.items():
        if key is None or index in step_less:
            continue
        if key in known:
            hits[index] = known[key]
        else:
            record[index] = f"{REPOSITORY}/{workload}/s{index}:{key}"
    return StagePlan(_rewritten(lines, froms, stages, hits), hits, record, skipped, names)


def _material(
    index: int,
    base: str,
    body: list[Instruction],
    stage_text: str,
    preamble: str,
    stages: tuple[Stage, ...],
    keys: Mapping[int, str | None],
    bases: Mapping[str, str],
    triggered: set[str],
    hasher: _ContextHasher,
) -> str:
    digest = hashlib.sha256(_VERSION)

    def add(*parts: str) -> None:
        for part in parts:
            data = part.encode("utf-8", "surrogateescape")
            digest.update(len(data).to_bytes(8, "big") + data)

    add("preamble", preamble, "stage", stage_text)
    add("base", _reference(base, index, stages, keys, bases, triggered))
    for ins in body:
        if ins.cmd == "onbuild":
            raise _NotCacheable("it has an ONBUILD instruction")
        if "<<" in ins.args and ins.cmd in ("run", "copy", "add"):
            raise _NotCacheable("it uses a heredoc")
        if ins.cmd == "run":
            for flag in ins.flags:
                name, _, value = flag.partition("=")
                if name.lower() == "--mount":
                    options = value.lower()
                    if not re.search(r"(^|,)type=(cache|secret|tmpfs)(,|$)", options) or (
                        "from=" in options
                    ):
                        raise _NotCacheable("a RUN mounts files (type=bind or from=)")
        if ins.cmd not in ("copy", "add"):
            continue
        froms = [f.partition("=")[2] for f in ins.flags if f.partition("=")[0].lower() == "--from"]
        if len(froms) > 1:
            raise _NotCacheable("a COPY/ADD has more than one --from (buildah takes the last)")
        source_from = froms[0] if froms else None
        if source_from is not None:
            add("from", _reference(source_from, index, stages, keys, bases, triggered))
            continue
        for source in _sources(ins):
            if ins.cmd == "add" and (
                "://" in source or source.startswith("git@") or _GLOB.search(source)
            ):
                raise _NotCacheable("an ADD reads a URL (or a word that may become one)")
            add("source", source, hasher.digest(source))
    add("ignore", hasher.ignores())
    return digest.hexdigest()


def _reference(
    name: str,
    index: int,
    stages: tuple[Stage, ...],
    keys: Mapping[int, str | None],
    bases: Mapping[str, str],
    triggered: set[str],
) -> str:
    """A FROM or ``--from`` word: an earlier stage's key, or a base image's identity.

    buildah maps names to stages with later ones winning, and an unnamed stage goes by its
    index: a word that more than one stage answers to (``AS x`` twice, ``AS 1`` beside the
    second stage) is not resolved here at all."""
    lowered = name.lower()
    named = [s for s in stages if lowered in (s.name, str(s.index))]
    if len(named) > 1:
        raise _NotCacheable(f"more than one stage answers to {name!r}")
    if named:
        stage = named[0]
        key = keys.get(stage.index) if stage.index < index else None
        if key is None:
            raise _NotCacheable(f"it reads stage {stage.name or stage.index}, which is not")
        return f"stage:{key}"
    if lowered == "scratch":
        return "scratch"
    if name in triggered:
        raise _NotCacheable(f"{name} has ONBUILD triggers")
    identity = bases.get(name)
    if not identity:
        raise _NotCacheable(f"{name} has no known identity")
    return f"image:{name}:{identity}"


def _sources(ins: Instruction) -> list[str]:
    """The source words of a COPY/ADD (all but the last), JSON or plain form."""
    args = ins.args.strip()
    words: list[str]
    if args.startswith("["):
        try:
            loaded = json.loads(args)
        except ValueError:
            loaded = None
        if not isinstance(loaded, list) or not all(isinstance(w, str) for w in loaded):
            raise _NotCacheable("a COPY/ADD cannot be read")
        words = loaded
    else:
        words = args.split()
    if len(words) < 2:
        raise _NotCacheable("a COPY/ADD cannot be read")
    return words[:-1]


def _cached(store_root: Path) -> dict[str, str]:
    """key -> image name, for every stage-cache entry in the store."""
    found: dict[str, str] = {}
    for _image_id, names in stored_images(store_root):
        for name in names:
            if name.startswith(REPOSITORY + "/") and ":" in name:
                found.setdefault(name.rsplit(":", 1)[1], name)
    return found


def _rewritten(
    lines: list[str],
    froms: list[Instruction],
    stages: tuple[Stage, ...],
    hits: Mapping[int, str],
) -> str:
    if not hits:
        return "\n".join(lines)
    out = lines[: froms[0].line - 1]
    for position, ins in enumerate(froms):
        end = froms[position + 1].line - 1 if position + 1 < len(froms) else len(lines)
        if position in hits:
            name = stages[position].name
            out.append(f"FROM {hits[position]}" + (f" AS {name}" if name else ""))
        else:
            out.extend(lines[ins.line - 1 : end])
    return "\n".join(out)


class _ContextHasher:
    """Digests of context paths (names, types, modes, bytes, link targets), memoised."""

    def __init__(self, context_dir: Path, ignore_files: Iterable[Path]) -> None:
        self.root = os.path.realpath(context_dir)
        self.ignore_files = list(ignore_files)
        self.hashed = 0
        self.deadline = time.monotonic() + MAX_HASHING_S
        self._memo: dict[str, str] = {}

    def ignores(self) -> str:
        digest = hashlib.sha256()
        for path in self.ignore_files:
            try:
                data = path.read_bytes() if path.is_file() else b"-"
            except OSError as exc:
                raise _NotCacheable(f"{path.name} cannot be read") from exc
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()

    def digest(self, source: str) -> str:
        relative = posixpath.normpath("/" + source).lstrip("/")
        if _GLOB.search(source) or relative in ("", "."):
            relative = ""  # a wildcard, a variable or quotes: the whole context
        real = os.path.realpath(os.path.join(self.root, relative))
        if real != self.root and not real.startswith(self.root + "/"):
            raise _NotCacheable(f"{relative} leads outside the context")
        # By the real path: many links to one directory are walked once.
        if real not in self._memo:
            self._memo[real] = self._tree(real)
        return self._memo[real]

    def _tree(self, real: str) -> str:
        digest = hashlib.sha256()
        if not os.path.lexists(real):
            digest.update(b"missing")
            return digest.hexdigest()
        if not os.path.isdir(real):
            self._entry(digest, real, "")
            return digest.hexdigest()
        for top, dirs, files in os.walk(real, followlinks=False):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(top, name)
                self._entry(digest, path, os.path.relpath(path, real))
        return digest.hexdigest()

    def _entry(self, digest: hashlib._Hash, path: str, name: str) -> None:
        self.hashed += _ENTRY_COST
        if self.hashed > MAX_HASHED_BYTES or time.monotonic() > self.deadline:
            raise _NotCacheable("the context is too large to key")
        info = os.lstat(path)
        mode = info.st_mode
        head = f"{name}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0".encode(
            "utf-8", "surrogateescape"
        )
        digest.update(len(head).to_bytes(8, "big") + head)
        if stat.S_ISLNK(mode):
            target = os.readlink(path).encode("utf-8", "surrogateescape")
            digest.update(len(target).to_bytes(8, "big") + target)
        elif stat.S_ISREG(mode):
            self.hashed += info.st_size
            if self.hashed > MAX_HASHED_BYTES:
                raise _NotCacheable("the context is too large to key")
            digest.update(info.st_size.to_bytes(8, "big"))
            # Never a link or a FIFO put there since the lstat: the file itself, or nothing.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise _NotCacheable(f"{name or path} changed while it was read")
                digest.update(hashlib.file_digest(handle, "sha256").digest())
        elif not stat.S_ISDIR(mode):
            raise _NotCacheable(f"{name or path} is not a file, directory or link")


def write_new(path: Path, text: str) -> Path:
    """``text`` in a new file at ``path`` (never through a link or over a file there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)  # whatever the umask: the build user reads it
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


class Recorder:
    """Watches buildah's output for the image that ends each stage to record: the last
    ``--> <id>`` line before the next stage's first step.

    RUN steps print into the same stream, so a build can print such lines too. Stages only
    move forward here: a later stage (whose text the key does not cover) cannot name the
    image of an earlier one, and buildah's own lines of a stage come after anything an
    earlier stage printed about it. What a stage's own RUN prints is covered by its key."""

    def __init__(self, stage_plan: StagePlan, on_line: LineSink) -> None:
        self._wanted = set(stage_plan.record)
        self._on_line = on_line
        self._stage = -1
        self.ends: dict[int, str] = {}

    def __call__(self, line: str) -> None:
        if self._wanted:
            if (step := _STEP.match(line)) is not None:
                self._stage = max(self._stage, int(step.group(1)) - 1)
            elif self._stage in self._wanted and (done := _COMMITTED.match(line)) is not None:
                self.ends[self._stage] = done.group(1)
        self._on_line(line)


def to_record(stage_plan: StagePlan, recorder: Recorder, store_root: Path) -> list[tuple[str, str]]:
    """(full image id, tag) for each recorded stage whose id is in the store, once."""
    images = stored_images(store_root)
    found = []
    for index, tag in sorted(stage_plan.record.items()):
        short = recorder.ends.get(index)
        if short is None:
            continue
        matches = [image_id for image_id, _ in images if image_id.startswith(short)]
        if len(matches) == 1:
            found.append((matches[0], tag))
    return found


def stale_names(entries: Iterable[tuple[str, Iterable[str], float]]) -> list[str]:
    """Stage-cache names garbage collection removes: all but the ``KEEP_PER_STAGE`` newest
    of each workload stage. ``entries``: (image id, names, created time) of the store."""
    by_stage: dict[str, list[tuple[float, str]]] = {}
    for _image_id, names, created in entries:
        for name in names:
            if name.startswith(REPOSITORY + "/") and ":" in name:
                by_stage.setdefault(name.rsplit(":", 1)[0], []).append((created, name))
    stale = []
    for named in by_stage.values():
        named.sort(reverse=True)
        stale += [name for _, name in named[KEEP_PER_STAGE:]]
    return sorted(stale)
