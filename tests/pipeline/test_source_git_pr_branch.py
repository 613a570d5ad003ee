"""A pull-request build reports the PR head's branch when the remote names it (a branch whose
tip is the commit of refs/pull/N/head or refs/merge-requests/N/head); real bare repos."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.pipeline.source_git import FetchedSource, fetch_source

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """c1 - c2 - c3. main: c1; feature/login and zz-copy: c2 (same tip); stale: c3;
    refs/pull/7/head = c2; refs/pull/8/head = c3; refs/merge-requests/9/head = c1."""
    root = tmp_path_factory.mktemp("prbranch")
    work = root / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "a.txt").write_text("1\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "c1")
    c1 = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "feature/login")
    (work / "a.txt").write_text("2\n")
    git(work, "commit", "-qam", "c2")
    c2 = git(work, "rev-parse", "HEAD")
    (work / "a.txt").write_text("3\n")
    git(work, "commit", "-qam", "c3")
    c3 = git(work, "rev-parse", "HEAD")
    bare = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    for ref, sha in {
        "refs/heads/main": c1,
        "refs/heads/zz-copy": c2,
        "refs/heads/feature/login": c2,
        "refs/heads/stale": c3,
        "refs/pull/7/head": c2,
        "refs/pull/8/head": c3,
        "refs/merge-requests/9/head": c1,
    }.items():
        git(work, "push", "-q", str(bare), f"{sha}:{ref}")
    return bare, {"c1": c1, "c2": c2, "c3": c3}


def fetch(bare: Path, dest: Path, **kwargs: Any) -> FetchedSource:
    options: dict[str, Any] = {"sha": None, "branch": None, "rules": None, **kwargs}
    return fetch_source(
        bare.resolve().as_uri(),
        dest,
        on_line=lambda _line: None,
        cancel=threading.Event(),
        timeout_s=60.0,
        allowed_local_roots=(bare.parent,),
        **options,
    )


def test_github_pr_reports_the_branch_at_its_head(
    remote: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bare, shas = remote
    result = fetch(bare, tmp_path / "src", pull_request_id=7)
    assert result.sha == shas["c2"]
    # Two branches point there: the first by name, every time.
    assert result.branch == "feature/login"


def test_gitlab_mr_reports_the_branch_at_its_head(
    remote: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bare, shas = remote
    result = fetch(bare, tmp_path / "src", pull_request_id=9)
    assert (result.sha, result.branch) == (shas["c1"], "main")


def test_a_pr_whose_head_no_branch_names_has_no_branch(
    remote: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bare, shas = remote
    result = fetch(bare, tmp_path / "src", pull_request_id=8)
    assert result.sha == shas["c3"]
    assert result.branch == "stale"
    # Once the branch has moved on (or for a fork's PR, whose branch is not on this
    # remote), no branch names the head.
    git(bare, "update-ref", "refs/heads/stale", shas["c1"])
    try:
        result = fetch(bare, tmp_path / "src2", pull_request_id=8)
    finally:
        git(bare, "update-ref", "refs/heads/stale", shas["c3"])
    assert (result.sha, result.branch) == (shas["c3"], None)


@pytest.mark.parametrize(("sha", "expected"), [("c2", "feature/login"), ("c1", None)])
def test_a_pr_build_of_a_given_sha(
    remote: tuple[Path, dict[str, str]], tmp_path: Path, sha: str, expected: str | None
) -> None:
    bare, shas = remote
    # The branch is named only if the given sha is the PR's head.
    result = fetch(bare, tmp_path / "src", sha=shas[sha], pull_request_id=7)
    assert (result.sha, result.branch) == (shas[sha], expected)


def test_a_given_branch_is_kept(remote: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bare, shas = remote
    result = fetch(bare, tmp_path / "src", pull_request_id=7, branch="other")
    assert (result.sha, result.branch) == (shas["c2"], "other")
