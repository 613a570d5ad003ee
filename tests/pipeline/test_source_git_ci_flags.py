"""Commit ignore flags in "most recent relevant commit", against a real bare repository whose
commit messages hold newlines, slashes, fake log headers and other odd (NUL-free) bytes."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.builds.relevant_commit import DEFAULT_CI_IGNORE_FLAGS, PathRules
from shipyard.pipeline.source_git import FetchedSource, fetch_source, parse_log

FAKE_SHA = "a" * 40
LONG_LINE = "x" * 20_000  # longer than the process runner's 8000-byte line cut


def _commit(label: str, message: bytes, files: dict[str, str], parent: str | None) -> bytes:
    mark = int(label[1:])
    out = (
        f"commit refs/heads/main\nmark :{mark}\n"
        f"committer Test <test@example.com> {1_700_000_000 + mark * 60} +0000\n"
    ).encode()
    out += b"data %d\n" % len(message) + message + b"\n"
    if parent is not None:
        out += f"from :{int(parent[1:])}\n".encode()
    for path, content in files.items():
        out += f"M 100644 inline {path}\n".encode()
        out += b"data %d\n" % len(content.encode()) + content.encode() + b"\n"
    return out


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """main, oldest first:

    c1 "base" app.py · c2 (empty message) docs/a.md · c3 multi-line, flag on its last line,
    docs/b.md · c4 tip: fake headers, paths, CR, tab, control and non-ASCII characters, a
    20 000-character line ending in a flag, app.py.
    """
    root = tmp_path_factory.mktemp("flags")
    bare = root / "flags.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    tip_message = (
        f"/{FAKE_SHA}\n\n{FAKE_SHA}\n\ndocs/x\r\n/etc/passwd\t\x01\x7f é 🚀 "
        f"[skip\nci] [SKIP CI]\n{LONG_LINE} [nf skip]\n"
    ).encode()
    stream = b"".join(
        [
            _commit("c1", b"base", {"app.py": "1\n"}, None),
            _commit("c2", b"", {"docs/a.md": "a\n"}, "c1"),
            _commit("c3", b"docs: more\n\nsee /docs/b.md\n[skip ci]", {"docs/b.md": "b\n"}, "c2"),
            _commit("c4", tip_message, {"app.py": "2\n"}, "c3"),
        ]
    )
    marks = root / "marks"
    subprocess.run(
        ["git", "fast-import", "--quiet", f"--export-marks={marks}"],
        cwd=bare,
        input=stream,
        check=True,
    )
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    shas = {f"c{n}": by_mark[f":{n}"] for n in range(1, 5)}
    return bare.resolve().as_uri(), shas


def _fetch(url: str, dest: Path, rules: PathRules | None, **kwargs: Any) -> FetchedSource:
    return fetch_source(
        url,
        dest,
        sha=None,
        branch="main",
        pull_request_id=None,
        rules=rules,
        on_line=lambda _line: None,
        cancel=threading.Event(),
        timeout_s=60.0,
        allowed_local_roots=(dest.parents[1], Path(url.removeprefix("file://")).parents[1]),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (None, "c4"),
        (PathRules((), False), "c4"),  # nothing to walk for
        # Flags only, no path rules: the walk still runs. c4 and c3 are flagged; c2's empty
        # message is not, and with no path rules an unflagged commit is relevant.
        (PathRules((), False, DEFAULT_CI_IGNORE_FLAGS), "c2"),
        # Both: c2 only changes docs/.
        (PathRules(("docs/",), False, DEFAULT_CI_IGNORE_FLAGS), "c1"),
        (PathRules(("docs/",), True, DEFAULT_CI_IGNORE_FLAGS), "c2"),
        # Custom flags: what the messages hold, read exactly.
        (PathRules((), False, ("[skip\nci]",)), "c3"),
        (PathRules((), False, ("\r\n/etc/passwd\t\x01\x7f é 🚀",)), "c3"),
        (PathRules((), False, (f"{LONG_LINE} [nf skip]",)), "c3"),
        (PathRules((), False, (f"/{FAKE_SHA}",)), "c3"),
        (PathRules((), False, ("docs/b.md",)), "c4"),  # a path, not in c4's message
        (PathRules((), False, ("base", "docs", "/")), "c2"),
        (PathRules((), False, ("[SKIP CI]",)), "c3"),  # case-sensitive
    ],
)
def test_commit_ignore_flags_pick_the_commit(
    flagged: tuple[str, dict[str, str]], tmp_path: Path, rules: PathRules | None, expected: str
) -> None:
    url, shas = flagged
    result = _fetch(url, tmp_path / "w" / "src", rules)
    assert result.sha == shas[expected]


def test_nothing_relevant_builds_the_tip(
    flagged: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, shas = flagged
    # c4 and c1 are flagged, c3 and c2 only change ignored paths.
    rules = PathRules(("docs/",), False, ("base", "/"))
    assert _fetch(url, tmp_path / "w" / "src", rules).sha == shas["c4"]


def test_the_walk_leaves_no_file_in_the_checkout(
    flagged: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = flagged
    dest = tmp_path / "w" / "src"
    _fetch(url, dest, PathRules((), False, DEFAULT_CI_IGNORE_FLAGS))
    assert not list((dest / ".git").glob("shipyard-walk-*"))


def test_parse_log_is_positional_and_needs_the_marker() -> None:
    marker = "m" * 32
    sha1, sha2, sha3 = "1" * 40, "2" * 40, "3" * 40
    out = (
        f"{marker}{sha1}\0/{sha2}\n{marker}{'f' * 39}\0\napp.py\0docs/x\0"
        f"{marker}{sha2}\0\0"  # empty message, no paths
        f"{marker}{sha3}\0/{sha1}\0\n{marker}\0"  # an old-style header as message
    )
    assert list(parse_log(out, marker)) == [
        (sha1, ["app.py", "docs/x"], f"/{sha2}\n{marker}{'f' * 39}"),
        (sha2, [], ""),
        (sha3, [marker], f"/{sha1}"),
    ]
    assert list(parse_log("", marker)) == []
