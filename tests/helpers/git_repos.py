"""A bare git repository with a known history, for source-fetching tests (no network).

Built with ``git fast-import`` so a branch of a hundred commits costs one process, and the
dates are fixed so runs are reproducible. History (oldest first)::

    main:     c1 (app.py, README.md, docs/index.md) - c2 app.py - c3 docs/index.md
              - c4 README.md - c5 docs/extra.md
    feature:  c2 - f1 feature.txt
    refs/pull/7/head:            f1 - pr7 pr.txt
    refs/merge-requests/9/head:  c5 - mr9 mr.txt
    merged:   c5 - m1 docs/m1.md - merge(m1, s1) - m2 docs/m2.md,  side s1: c5 - lib.py
    long:     c2 - LONG_DOCS_COMMITS commits that only change docs/log.md
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LONG_DOCS_COMMITS = 120
_EPOCH = 1_700_000_000


@dataclass(frozen=True)
class SampleRepo:
    bare: Path
    url: str  # file:// URL of ``bare``
    shas: dict[str, str]  # commit label (c1, f1, pr7, merge, long-tip, …) -> sha


@dataclass
class _Stream:
    """Writes a fast-import stream; every commit gets a mark named after its label."""

    chunks: list[bytes] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)

    def _data(self, payload: bytes) -> None:
        self.chunks.append(b"data %d\n" % len(payload) + payload + b"\n")

    def commit(
        self,
        ref: str,
        label: str,
        files: dict[str, str],
        *,
        parent: str | None = None,
        merge: str | None = None,
    ) -> None:
        mark = len(self.marks) + 1
        self.marks[label] = mark
        when = _EPOCH + mark * 60
        head = f"commit {ref}\nmark :{mark}\ncommitter Test <test@example.com> {when} +0000\n"
        self.chunks.append(head.encode())
        self._data(label.encode())
        if parent is not None:
            self.chunks.append(f"from :{self.marks[parent]}\n".encode())
        if merge is not None:
            self.chunks.append(f"merge :{self.marks[merge]}\n".encode())
        for path, content in files.items():
            self.chunks.append(f"M 100644 inline {path}\n".encode())
            self._data(content.encode())


def make_sample_repo(root: Path) -> SampleRepo:
    bare = root / "sample.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    s = _Stream()
    s.commit(
        "refs/heads/main",
        "c1",
        {"app.py": "print(1)\n", "README.md": "# sample\n", "docs/index.md": "v1\n"},
    )
    s.commit("refs/heads/main", "c2", {"app.py": "print(2)\n"}, parent="c1")
    s.commit("refs/heads/main", "c3", {"docs/index.md": "v2\n"}, parent="c2")
    s.commit("refs/heads/main", "c4", {"README.md": "# sample 2\n"}, parent="c3")
    s.commit("refs/heads/main", "c5", {"docs/extra.md": "extra\n"}, parent="c4")
    s.commit("refs/heads/feature", "f1", {"feature.txt": "f\n"}, parent="c2")
    s.commit("refs/pull/7/head", "pr7", {"pr.txt": "7\n"}, parent="f1")
    s.commit("refs/merge-requests/9/head", "mr9", {"mr.txt": "9\n"}, parent="c5")
    s.commit("refs/heads/side", "s1", {"lib.py": "x = 1\n"}, parent="c5")
    s.commit("refs/heads/merged", "m1", {"docs/m1.md": "m1\n"}, parent="c5")
    # fast-import builds a merge's tree from its first parent only: bring lib.py in by hand.
    s.commit("refs/heads/merged", "merge", {"lib.py": "x = 1\n"}, parent="m1", merge="s1")
    s.commit("refs/heads/merged", "m2", {"docs/m2.md": "m2\n"}, parent="merge")
    previous = "c2"
    for n in range(LONG_DOCS_COMMITS):
        label = f"long{n}"
        s.commit("refs/heads/long", label, {"docs/log.md": f"{n}\n"}, parent=previous)
        previous = label
    marks_file = root / "sample.marks"
    subprocess.run(
        ["git", "fast-import", "--quiet", f"--export-marks={marks_file}"],
        cwd=bare,
        input=b"".join(s.chunks),
        check=True,
    )
    by_mark = dict(line.split() for line in marks_file.read_text().splitlines())
    shas = {label: by_mark[f":{mark}"] for label, mark in s.marks.items()}
    shas["long-tip"] = shas[previous]
    return SampleRepo(bare=bare, url=bare.resolve().as_uri(), shas=shas)
