"""The persistent per-project git mirror against real bare repositories (file:// URLs)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.builds.relevant_commit import PathRules
from shipyard.pipeline.mirror import (
    MirrorStore,
    fetch_via_mirror,
    locked,
    normalise_url,
    push_diff,
    read_refs_via_mirror,
)
from shipyard.pipeline.source_git import FetchedSource
from tests.helpers.git_repos import SampleRepo, make_sample_repo


@pytest.fixture
def repo(tmp_path: Path) -> SampleRepo:
    return make_sample_repo(tmp_path / "remote")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


class Fetch:
    def __init__(self, root: Path, mirror: Path) -> None:
        self.root = root
        self.mirror = mirror
        self.lines: list[str] = []
        self.count = 0

    def __call__(self, url: str, **kwargs: Any) -> FetchedSource:
        self.count += 1
        options: dict[str, Any] = {
            "sha": None,
            "branch": None,
            "pull_request_id": None,
            "rules": None,
            "cancel": threading.Event(),
            "timeout_s": 60.0,
            "allowed_local_roots": (self.root,),
        }
        options.update(kwargs)
        dest = self.root / f"wt-{self.count}" / "src"
        dest.parent.mkdir()
        return fetch_via_mirror(url, dest, self.mirror, on_line=self.lines.append, **options)


@pytest.fixture
def fetch(tmp_path: Path) -> Fetch:
    mirror = MirrorStore(tmp_path / "mirrors").path("proj", "file:///x")
    return Fetch(tmp_path, mirror)


def test_normalised_urls_name_one_repository() -> None:
    same = {
        normalise_url(u)
        for u in (
            "https://github.com/Acme/App.git",
            "https://user:tok@github.com/Acme/App",
            "git@github.com:Acme/App.git",
            "ssh://git@github.com:22/Acme/App.git",
            "https://GitHub.com:443/Acme/App/",
        )
    }
    assert same == {"github.com/Acme/App"}
    assert normalise_url("/srv/a.git") == normalise_url("file:///srv/a")


def test_mirrors_are_per_project(tmp_path: Path) -> None:
    store = MirrorStore(tmp_path)
    assert store.path("a", "https://h/x.git") != store.path("b", "https://h/x.git")
    assert store.path("a", "https://h/x.git").parent == tmp_path / "a"
    with pytest.raises(Exception, match="invalid project id"):
        store.path("../b", "https://h/x.git")


def test_branch_then_new_commit_fetches_only_new_objects(repo: SampleRepo, fetch: Fetch) -> None:
    first = fetch(repo.url, branch="main")
    assert first.sha == repo.shas["c5"]
    assert (first.path / "docs" / "extra.md").exists()
    # The mirror's config holds no URL; FETCH_HEAD is not written.
    config = (fetch.mirror / "config").read_text()
    assert repo.url not in config and "remote" not in config
    assert not (fetch.mirror / "FETCH_HEAD").exists()
    # A new commit on main: the next build gets it from the mirror after an incremental fetch.
    work = fetch.root / "push"
    _git(fetch.root, "clone", "-q", repo.url, str(work))
    (work / "new.txt").write_text("new\n")
    _git(work, "add", "new.txt")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "new")
    _git(work, "push", "-q", "origin", "main")
    new = _git(work, "rev-parse", "HEAD")
    second = fetch(repo.url, branch="main")
    assert second.sha == new and (second.path / "new.txt").read_text() == "new\n"
    # The checkout borrows the mirror's objects; the fetch by sha of a known commit costs
    # no network at all.
    fetch.lines.clear()
    third = fetch(repo.url, sha=repo.shas["c3"], branch="main")
    assert third.sha == repo.shas["c3"]
    assert (third.path / "docs" / "index.md").read_text() == "v2\n"


def test_known_commit_is_not_fetched_again(repo: SampleRepo, fetch: Fetch) -> None:
    fetch(repo.url, sha=repo.shas["c5"])
    fetch.lines.clear()
    again = fetch(repo.url, sha=repo.shas["c5"])
    assert again.sha == repo.shas["c5"]
    assert any("already in the repository mirror" in line for line in fetch.lines)


def test_pull_request_and_merge_request(repo: SampleRepo, fetch: Fetch) -> None:
    assert fetch(repo.url, pull_request_id=7).sha == repo.shas["pr7"]
    assert fetch(repo.url, pull_request_id=9).sha == repo.shas["mr9"]


def test_relevant_commit_walk_in_the_mirror(repo: SampleRepo, fetch: Fetch) -> None:
    rules = PathRules(("docs/**",), False)
    # long: 120 docs-only commits on top of c2; the walk deepens past them in the mirror.
    assert fetch(repo.url, branch="long", rules=rules).sha == repo.shas["c2"]
    assert fetch(repo.url, branch="main", rules=rules).sha == repo.shas["c4"]


def test_git_folder_is_self_contained(repo: SampleRepo, fetch: Fetch) -> None:
    got = fetch(repo.url, branch="main", include_git_folder=True)
    assert not (got.path / ".git" / "objects" / "info" / "alternates").exists()
    assert _git(got.path, "rev-parse", "HEAD") == repo.shas["c5"]
    _git(got.path, "fsck", "--no-dangling")


def test_refs_and_push_diff(repo: SampleRepo, tmp_path: Path) -> None:
    mirror = MirrorStore(tmp_path / "m").path("p", repo.url)
    refs = read_refs_via_mirror(repo.url, mirror, timeout_s=60, allowed_local_roots=(tmp_path,))
    assert refs["refs/heads/main"] == repo.shas["c5"]
    assert refs["refs/pull/7/head"] == repo.shas["pr7"]
    assert refs["refs/merge-requests/9/head"] == repo.shas["mr9"]
    # Net diff c2..c5 holds every path its commits touched, not only the tip's.
    diff = push_diff(repo.url, mirror, before=repo.shas["c2"], after=repo.shas["c5"],
                     ref="refs/heads/main", base_branch=None, timeout_s=60,
                     allowed_local_roots=(tmp_path,))  # fmt: skip
    assert set(diff.paths or ()) == {"docs/index.md", "README.md", "docs/extra.md"}
    assert diff.head_message.strip() == "c5"
    # A new branch: diffed against its merge base with main.
    new = push_diff(repo.url, mirror, before="0" * 40, after=repo.shas["s1"],
                    ref="refs/heads/side", base_branch="main", timeout_s=60,
                    allowed_local_roots=(tmp_path,))  # fmt: skip
    assert new.paths == ("lib.py",)
    # A deleted branch is pruned from the mirror at the next listing.
    subprocess.run(["git", "update-ref", "-d", "refs/heads/side"], cwd=repo.bare, check=True)
    refs = read_refs_via_mirror(repo.url, mirror, timeout_s=60, allowed_local_roots=(tmp_path,))
    assert "refs/heads/side" not in refs


def test_lock_is_exclusive(tmp_path: Path) -> None:
    mirror = tmp_path / "x.git"
    order: list[str] = []
    with locked(mirror):
        cancel = threading.Event()

        def other() -> None:
            try:
                with locked(mirror, cancel=cancel):
                    order.append("other")
            except Exception as exc:  # Cancelled
                order.append(type(exc).__name__)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.3)
        order.append("first")
        cancel.set()
        thread.join()
    assert order == ["first", "Cancelled"]


def test_full_clone_has_the_whole_history(repo: SampleRepo, fetch: Fetch) -> None:
    got = fetch(repo.url, branch="main", full_clone=True)
    assert not (got.path / ".git" / "shallow").exists()
    assert _git(got.path, "rev-list", "--count", "HEAD") == "5"
    _git(got.path, "fsck", "--no-dangling")


def test_walks_deepen_past_tips_a_listing_left_shallow(
    repo: SampleRepo, fetch: Fetch, tmp_path: Path
) -> None:
    refs = read_refs_via_mirror(repo.url, fetch.mirror, timeout_s=60,
                                allowed_local_roots=(tmp_path,))  # fmt: skip
    assert refs["refs/heads/long"] == repo.shas["long-tip"]
    rules = PathRules(("docs/**",), False)
    assert fetch(repo.url, branch="long", rules=rules).sha == repo.shas["c2"]
    assert fetch(repo.url, branch="merged", rules=rules).sha == repo.shas["merge"]


def test_git_gc_is_asked_only_near_its_thresholds(tmp_path: Path) -> None:
    from shipyard.pipeline.mirror import GC_LOOSE_17_CHECK, GC_PACKS_CHECK, MirrorFetcher

    calls: list[tuple[str, ...]] = []

    class Recorder:
        def run(self, *args: str, **_: Any) -> None:
            calls.append(args)

    mirror = tmp_path / "m.git"
    (mirror / "objects" / "pack").mkdir(parents=True)
    fetcher = MirrorFetcher.__new__(MirrorFetcher)
    fetcher.mirror, fetcher.git = mirror, Recorder()  # type: ignore[assignment]
    fetcher.gc()
    assert calls == []  # a small mirror: no git process
    for i in range(GC_PACKS_CHECK):
        (mirror / "objects" / "pack" / f"pack-{i}.pack").touch()
    fetcher.gc()
    assert calls == [("gc", "--auto", "--quiet")]
    calls.clear()
    for pack in (mirror / "objects" / "pack").iterdir():
        pack.unlink()
    (mirror / "objects" / "17").mkdir()
    for i in range(GC_LOOSE_17_CHECK):
        (mirror / "objects" / "17" / f"{i:038x}").touch()
    fetcher.gc()
    assert calls == [("gc", "--auto", "--quiet")]
