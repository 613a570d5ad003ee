"""What a build page shows above its log: the stage timeline (from the executor's ``==> stage``
lines and the build row's times) and buildah's steps (``STEP n/m: …``) with their durations
and cache hits (``--> Using cache …``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

_STAGE = re.compile(r"^==> (cloning|building|uploading)\s*$")
# buildah prefixes the steps of a multi-stage build with the stage: "[2/3] STEP 1/4: …".
_STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)$")
_CACHE = re.compile(r"Using cache\b")

STAGES = ("queued", "cloning", "building", "uploading")


@dataclass
class Step:
    number: int
    total: int
    text: str
    started: datetime
    stage: str = ""  # "2/3" in a multi-stage build
    ended: datetime | None = None
    cached: bool = False
    line: int = 0  # 1-based line number in the log

    @property
    def seconds(self) -> float | None:
        if self.ended is None:
            return None
        return max(0.0, (self.ended - self.started).total_seconds())


@dataclass
class Stage:
    name: str
    started: datetime | None
    ended: datetime | None = None
    state: str = "pending"  # pending | current | done | failed | skipped

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, (self.ended - self.started).total_seconds())


@dataclass
class Summary:
    stages: list[Stage] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    # The dispatcher's latest "Queued: position P of N; <what it waits on>" line.
    queue_note: str | None = None
    result: str | None = None  # the final status, when concluded
    result_at: datetime | None = None

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.steps if s.cached)


def summarise(
    lines: Iterable[tuple[int, datetime, str]],
    *,
    created: datetime,
    concluded: datetime | None,
    status: str,
) -> Summary:
    """``lines``: (sequence number, time, text) of the log's marker lines, in order."""
    marks: dict[str, datetime] = {"queued": created}
    steps: list[Step] = []
    queue_note = None
    for seq, ts, text in lines:
        if text.startswith("Queued: "):
            queue_note = text.removeprefix("Queued: ")
            continue
        stage = _STAGE.match(text)
        if stage:
            marks.setdefault(stage.group(1), ts)
            continue
        step = _STEP.match(text)
        if step:
            if steps and steps[-1].ended is None:
                steps[-1].ended = ts
            stage_of = f"{step.group(1)}/{step.group(2)}" if step.group(1) else ""
            steps.append(
                Step(
                    int(step.group(3)),
                    int(step.group(4)),
                    step.group(5),
                    ts,
                    stage=stage_of,
                    line=seq + 1,
                )
            )
            continue
        if _CACHE.search(text) and steps:
            steps[-1].cached = True
    # The last step ends when pushing starts, or when the build ends.
    if steps and steps[-1].ended is None:
        steps[-1].ended = marks.get("uploading") or concluded
    summary = Summary(steps=steps, queue_note=queue_note)
    reached = [name for name in STAGES if name in marks]
    last = reached[-1]
    for i, name in enumerate(STAGES):
        started = marks.get(name)
        following = next((marks[n] for n in STAGES[i + 1 :] if n in marks), None)
        entry = Stage(name, started, following or (concluded if started else None))
        if started is None:
            entry.state = "skipped" if concluded is not None else "pending"
        elif name != last:
            entry.state = "done"
        elif concluded is None:
            entry.state, entry.ended = "current", None
        else:
            entry.state = "done" if status == "SUCCESS" else "failed"
        summary.stages.append(entry)
    if concluded is not None:
        summary.result, summary.result_at = status, concluded
    return summary
