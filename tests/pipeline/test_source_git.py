"""fetch_source against real bare repositories on disk (file:// URLs; no network)."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.builds.relevant_commit import PathRules
from shipyard.pipeline import source_git
from shipyard.pipeline.errors import Cancelled, SourceError, TimedOut
from shipyard.pipeline.source_git import (
    FetchedSource,
    check_repository_url,
    fetch_source,
    list_remote_head,
    strip_userinfo,
)
from tests.helpers.git_repos import SampleRepo, make_sample_repo

# The server refuses wants by id under protocol v0 (uploadpack.allowReachableSHA1InWant is
# off by default); v2, git's default, allows them. This forces the fallback path.
PROTOCOL_V0 = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.version",
    "GIT_CONFIG_VALUE_0": "0",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return make_sample_repo(tmp_path_factory.mktemp("remote"))


class Fetch:
    def __init__(self, dest: Path, allowed_local_roots: tuple[Path, ...]) -> None:
        self.dest = dest
        self.lines: list[str] = []
        self.allowed_local_roots = allowed_local_roots

    def __call__(self, url: str, **kwargs: Any) -> FetchedSource:
        options: dict[str, Any] = {
            "sha": None,
            "branch": None,
            "pull_request_id": None,
            "rules": None,
            "cancel": threading.Event(),
            "timeout_s": 60.0,
            "allowed_local_roots": self.allowed_local_roots,
        }
        options.update(kwargs)
        return fetch_source(url, self.dest, on_line=self.lines.append, **options)


@pytest.fixture
def local_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    """Every sample repository lives under pytest's base temp dir."""
    return (tmp_path_factory.getbasetemp(),)


@pytest.fixture
def fetch(tmp_path: Path, local_roots: tuple[Path, ...]) -> Fetch:
    return Fetch(tmp_path / "src", local_roots)


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_count(path: Path) -> int:
    return int(git(path, "rev-list", "--count", "HEAD"))


def test_sha_fetches_exactly_that_one_commit(repo: SampleRepo, fetch: Fetch) -> None:
    result = fetch(repo.url, sha=repo.shas["c3"])
    assert result == FetchedSource(sha=repo.shas["c3"], branch=None, path=fetch.dest)
    assert git(fetch.dest, "rev-parse", "HEAD") == repo.shas["c3"]
    assert git(fetch.dest, "rev-parse", "--is-shallow-repository") == "true"
    assert commit_count(fetch.dest) == 1
    assert (fetch.dest / "app.py").read_text() == "print(2)\n"
    assert (fetch.dest / "docs/index.md").read_text() == "v2\n"
    assert not (fetch.dest / "docs/extra.md").exists()


def test_sha_with_branch_reports_the_branch(repo: SampleRepo, fetch: Fetch) -> None:
    result = fetch(repo.url, sha=repo.shas["c2"], branch="main")
    assert (result.sha, result.branch) == (repo.shas["c2"], "main")
    assert commit_count(fetch.dest) == 1


def test_remote_origin_is_recorded_without_credentials(repo: SampleRepo, fetch: Fetch) -> None:
    fetch(repo.url, branch="main")
    assert git(fetch.dest, "remote", "get-url", "origin") == repo.url


def test_branch_fetches_its_tip_only(repo: SampleRepo, fetch: Fetch) -> None:
    result = fetch(repo.url, branch="feature")
    assert (result.sha, result.branch) == (repo.shas["f1"], "feature")
    assert commit_count(fetch.dest) == 1
    assert (fetch.dest / "feature.txt").exists()


def test_no_branch_means_the_default_branch(repo: SampleRepo, fetch: Fetch) -> None:
    assert fetch(repo.url).sha == repo.shas["c5"]


def test_github_pull_request_ref(repo: SampleRepo, fetch: Fetch) -> None:
    result = fetch(repo.url, pull_request_id=7)
    assert result.sha == repo.shas["pr7"]
    assert (fetch.dest / "pr.txt").exists()
    assert commit_count(fetch.dest) == 1


def test_gitlab_merge_request_ref(repo: SampleRepo, fetch: Fetch) -> None:
    assert fetch(repo.url, pull_request_id=9).sha == repo.shas["mr9"]


def test_unknown_pull_request(repo: SampleRepo, fetch: Fetch) -> None:
    with pytest.raises(SourceError) as err:
        fetch(repo.url, pull_request_id=8)
    assert err.value.message == (
        "pull request 8 not found on remote (tried refs/pull/8/head and refs/merge-requests/8/head)"
    )


def test_unknown_branch(repo: SampleRepo, fetch: Fetch) -> None:
    with pytest.raises(SourceError) as err:
        fetch(repo.url, branch="nope")
    assert err.value.message == "branch 'nope' not found on remote"


@pytest.mark.parametrize("branch", [None, "main"])
@pytest.mark.parametrize("env", [None, PROTOCOL_V0], ids=["v2", "v0"])
def test_unknown_sha(
    repo: SampleRepo, fetch: Fetch, branch: str | None, env: dict[str, str] | None
) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(SourceError) as err:
        fetch(repo.url, sha=missing, branch=branch, env=env)
    assert err.value.message == f"commit {missing} not found on remote"


def test_sha_refused_by_id_is_found_in_the_branch(repo: SampleRepo, fetch: Fetch) -> None:
    wanted = repo.shas["long100"]  # 20 commits below the tip of "long"
    result = fetch(repo.url, sha=wanted, branch="long", env=PROTOCOL_V0)
    assert result.sha == wanted
    assert git(fetch.dest, "rev-parse", "HEAD") == wanted
    assert any("did not send" in line for line in fetch.lines)
    # Depth-limited search (50), not the whole branch (122 commits).
    assert git(fetch.dest, "rev-parse", "--is-shallow-repository") == "true"
    assert commit_count(fetch.dest) < 50


def test_sha_deep_in_the_branch_is_found_by_deepening(repo: SampleRepo, fetch: Fetch) -> None:
    result = fetch(repo.url, sha=repo.shas["c1"], branch="long", env=PROTOCOL_V0)
    assert result.sha == repo.shas["c1"]
    assert (fetch.dest / "docs/index.md").read_text() == "v1\n"


def test_sha_refused_by_id_without_branch_fetches_everything(
    repo: SampleRepo, fetch: Fetch
) -> None:
    assert fetch(repo.url, sha=repo.shas["s1"], env=PROTOCOL_V0).sha == repo.shas["s1"]


@pytest.mark.parametrize(
    ("branch", "rules", "expected"),
    [
        ("main", PathRules(("docs/",), allow_list=False), "c4"),
        ("main", PathRules(("docs/", "*.md"), allow_list=False), "c2"),
        ("main", PathRules(("docs/",), allow_list=True), "c5"),
        ("main", PathRules(("app.py",), allow_list=True), "c2"),
        ("main", PathRules(("# nothing",), allow_list=False), "c5"),
        # First-parent walk: the merge that brought lib.py in, not the side-branch commit.
        ("merged", PathRules(("docs/",), allow_list=False), "merge"),
        # c2 is 121 commits down: the first fetch (depth 50) must be deepened, and the
        # shallow boundary commit must not count as "adds every file".
        ("long", PathRules(("docs/",), allow_list=False), "c2"),
    ],
)
def test_most_recent_relevant_commit(
    repo: SampleRepo, fetch: Fetch, branch: str, rules: PathRules, expected: str
) -> None:
    result = fetch(repo.url, branch=branch, rules=rules)
    assert result.sha == repo.shas[expected]
    assert git(fetch.dest, "rev-parse", "HEAD") == repo.shas[expected]


def test_no_relevant_commit_within_the_limit_builds_the_tip(
    repo: SampleRepo, fetch: Fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_git, "RELEVANT_DEPTHS", (5, 10))
    result = fetch(repo.url, branch="long", rules=PathRules(("docs/",), allow_list=False))
    assert result.sha == repo.shas["long-tip"]
    assert any("building the tip" in line for line in fetch.lines)


def test_cancel_already_set(repo: SampleRepo, fetch: Fetch) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        fetch(repo.url, branch="main", cancel=cancel)


def test_timeout(repo: SampleRepo, fetch: Fetch) -> None:
    with pytest.raises(TimedOut) as err:
        fetch(repo.url, branch="main", timeout_s=0)
    assert "timed out" in err.value.message


def test_url_starting_with_dash_is_refused(fetch: Fetch) -> None:
    with pytest.raises(SourceError) as err:
        fetch("--upload-pack=touch /tmp/pwned", branch="main")
    assert err.value.message.startswith("unsupported repository URL")
    assert not (fetch.dest / ".git").exists()


def test_invalid_branch_is_refused(repo: SampleRepo, fetch: Fetch) -> None:
    with pytest.raises(SourceError, match="invalid branch name"):
        fetch(repo.url, branch="-x")


def test_credentials_never_reach_the_log_or_disk(fetch: Fetch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:s3cret@127.0.0.1:{port}/repo.git"
    with pytest.raises(SourceError) as err:
        fetch(url, branch="main")
    assert "could not" in err.value.message
    assert "s3cret" not in err.value.message
    assert fetch.lines and not any("s3cret" in line for line in fetch.lines)
    assert "s3cret" not in (fetch.dest / ".git" / "config").read_text()


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/app.git",
        "http://git.internal:8080/app",
        "ssh://git@github.com:22/acme/app.git",
        "git://example.com/app.git",
        "file:///srv/git/app.git",
        "/srv/git/app.git",
        "git@github.com:acme/app.git",
        "example.com:app.git",
    ],
)
def test_supported_urls(url: str) -> None:
    check_repository_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "-uhelp",
        "--upload-pack=touch /tmp/pwned",
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "host::path",
        "relative/path",
        "ftp://example.com/app.git",
        "file://otherhost/srv/app.git",
        "file://relative",
        "ssh://-oProxyCommand=touch%20x/app",
        "ssh://-user@host/app",
        "-oProxyCommand=x@host:app",
        "https://example.com/app\n.git",
    ],
)
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(SourceError, match="unsupported repository URL"):
        check_repository_url(url)


def test_strip_userinfo() -> None:
    line = "fatal: could not read https://bot:tok3n@git.example.com/x.git and ssh://git@h/y"
    assert strip_userinfo(line) == (
        "fatal: could not read https://git.example.com/x.git and ssh://h/y"
    )


def test_list_remote_head(repo: SampleRepo, local_roots: tuple[Path, ...]) -> None:
    options: dict[str, Any] = {
        "on_line": lambda _line: None,
        "cancel": threading.Event(),
        "timeout_s": 30,
        "allowed_local_roots": local_roots,
    }
    assert list_remote_head(repo.url, "feature", **options) == repo.shas["f1"]
    with pytest.raises(SourceError, match="branch 'nope' not found"):
        list_remote_head(repo.url, "nope", **options)
