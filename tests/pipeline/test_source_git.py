"""fetch_source against real bare repositories on disk (file:// URLs; no network)."""

from __future__ import annotations

import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    # The committer time of c3 (the image's created time and --timestamp).
    committed = int(git(repo.bare, "show", "-s", "--format=%ct", repo.shas["c3"]))
    assert result == FetchedSource(
        sha=repo.shas["c3"], branch=None, path=fetch.dest, commit_time=committed
    )
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
    assert result.branch is None  # no branch of the remote is at the PR's head
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


# --- issue 9, item 6: local repositories, host configuration, checkout limits ----------------


@pytest.mark.parametrize("form", ["file", "path", "localhost"])
def test_local_repositories_are_refused_by_default(
    repo: SampleRepo, tmp_path: Path, form: str
) -> None:
    url = {
        "file": repo.url,
        "path": str(repo.bare),
        "localhost": f"file://localhost{repo.bare}",
    }[form]
    with pytest.raises(SourceError) as err:
        Fetch(tmp_path / "src", ())(url, branch="main")
    assert err.value.message.startswith("local repository URLs are not allowed")
    assert "SHIPYARD_ALLOWED_LOCAL_ROOTS" in err.value.message
    assert not (tmp_path / "src").exists()


def test_list_remote_head_refuses_local_repositories_by_default(repo: SampleRepo) -> None:
    with pytest.raises(SourceError, match="local repository URLs are not allowed"):
        list_remote_head(
            repo.url, "main", on_line=lambda _line: None, cancel=threading.Event(), timeout_s=30
        )


def test_local_repository_under_an_allowed_root(repo: SampleRepo, tmp_path: Path) -> None:
    fetch = Fetch(tmp_path / "src", (repo.bare.parent,))
    assert fetch(str(repo.bare), branch="main").sha == repo.shas["c5"]


def test_local_repository_outside_the_roots_is_refused(repo: SampleRepo, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    with pytest.raises(SourceError) as err:
        Fetch(tmp_path / "src", (allowed,))(repo.url, branch="main")
    assert "is not under any of SHIPYARD_ALLOWED_LOCAL_ROOTS" in err.value.message


def test_symlink_under_a_root_to_a_repository_outside_is_refused(
    repo: SampleRepo, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "app.git").symlink_to(repo.bare)
    (allowed / "sneaky").symlink_to(repo.bare.parent)
    fetch = Fetch(tmp_path / "src", (allowed,))
    for url in (f"file://{allowed}/app.git", f"{allowed}/app.git", f"{allowed}/sneaky/../x"):
        with pytest.raises(SourceError, match="is not under any of"):
            fetch(url, branch="main")


def test_dotdot_out_of_a_root_is_refused(repo: SampleRepo, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    url = f"file://{allowed}/../../{repo.bare.relative_to(repo.bare.anchor)}"
    with pytest.raises(SourceError, match="is not under any of"):
        Fetch(tmp_path / "src", (allowed,))(url, branch="main")


def test_a_root_that_is_a_symlink_is_resolved(repo: SampleRepo, tmp_path: Path) -> None:
    (tmp_path / "roots").symlink_to(repo.bare.parent)
    fetch = Fetch(tmp_path / "src", (tmp_path / "roots",))
    assert fetch(repo.url, branch="feature").sha == repo.shas["f1"]


@pytest.mark.parametrize("suffix", ["%2e%2e", "?x=1", "#frag"])
def test_local_urls_git_would_read_differently_are_refused(
    repo: SampleRepo, fetch: Fetch, suffix: str
) -> None:
    with pytest.raises(SourceError, match="unsupported repository URL"):
        fetch(repo.url + suffix, branch="main")


@pytest.fixture
def hostile_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: SampleRepo) -> Path:
    """The server user's HOME with a gitconfig that rewrites URLs and runs a credential
    helper; ssh and git variables of the service's environment that must not reach git."""
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    marker = tmp_path / "helper-ran"
    config = (
        f'[url "{repo.url}"]\n\tinsteadOf = https://rewritten.invalid/app.git\n'
        f'[credential]\n\thelper = "!f() {{ touch {marker}; }}; f"\n'
        f'[core]\n\tfsmonitor = "touch {marker}-fsmonitor"\n'
    )
    (home / ".gitconfig").write_text(config)
    (home / ".config" / "git" / "config").write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    monkeypatch.setenv("GIT_SSH_COMMAND", f"touch {marker}-ssh; ssh")
    monkeypatch.setenv(
        "GIT_CONFIG_PARAMETERS", f"'url.{repo.url}.insteadof'='https://env.invalid/app.git'"
    )
    return tmp_path


def test_the_servers_git_configuration_is_not_used(
    hostile_home: Path, fetch: Fetch, repo: SampleRepo
) -> None:
    for url in ("https://rewritten.invalid/app.git", "https://env.invalid/app.git"):
        with pytest.raises(SourceError, match="could not"):
            fetch(url, branch="main")
    # A local fetch runs checkout too (where fsmonitor would run).
    assert fetch(repo.url, branch="main").sha == repo.shas["c5"]
    assert sorted(p.name for p in hostile_home.iterdir() if "helper-ran" in p.name) == []


def test_credential_helpers_of_the_server_are_not_asked(hostile_home: Path, fetch: Fetch) -> None:
    """An http server that wants a password: git would ask the credential helpers."""
    asked: list[str] = []

    class AuthRequired(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.headers.get("Authorization") or "")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthRequired)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(SourceError):
            fetch(f"http://127.0.0.1:{server.server_address[1]}/app.git", branch="main")
    finally:
        server.shutdown()
        server.server_close()
    assert asked  # the server was reached …
    assert not any(p.name.startswith("helper-ran") for p in hostile_home.iterdir())
    assert all(a == "" for a in asked)  # … and no credential was ever sent


def test_git_env_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    env = source_git.git_env(None, home=tmp_path)
    assert env["HOME"] == str(tmp_path)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["https_proxy"] == "http://proxy:3128"
    assert "-F /dev/null" in env["GIT_SSH_COMMAND"]
    assert "IdentityAgent=none" in env["GIT_SSH_COMMAND"]
    for name in ("SSH_AUTH_SOCK", "GIT_DIR", "AWS_SECRET_ACCESS_KEY"):
        assert name not in env
    # Shipyard's own additions (a deploy key) still win; the prompt stays off.
    extra = {"GIT_SSH_COMMAND": "ssh -i /keys/deploy", "GIT_TERMINAL_PROMPT": "1"}
    env = source_git.git_env(extra, home=tmp_path)
    assert env["GIT_SSH_COMMAND"] == "ssh -i /keys/deploy"
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_file_transport_is_off_for_remote_urls(repo: SampleRepo, fetch: Fetch) -> None:
    """A remote URL cannot pull a local repository in (e.g. through a redirect-like
    transport or a submodule): git itself refuses file:// then."""
    git_ = source_git._Git(
        None,
        log=lambda _line: None,
        cancel=threading.Event(),
        timeout_s=30,
        env=None,
        home=fetch.dest.parent,
        allow_file=False,
    )
    rc, out = git_.output("ls-remote", "--end-of-options", repo.url)
    assert rc != 0
    assert "transport 'file' not allowed" in out


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (source_git.CheckoutLimits(max_entries=2), "has 3 entries, more than 2"),
        (source_git.CheckoutLimits(max_bytes=10), "bytes, more than 10"),
    ],
)
def test_checkout_limits(
    repo: SampleRepo, fetch: Fetch, limits: source_git.CheckoutLimits, expected: str
) -> None:
    with pytest.raises(SourceError) as err:
        fetch(repo.url, sha=repo.shas["c1"], limits=limits)
    assert expected in err.value.message
    assert repo.shas["c1"][:12] in err.value.message
    assert not (fetch.dest / "app.py").exists()  # refused before any file was written


def test_checkout_within_limits(repo: SampleRepo, fetch: Fetch) -> None:
    limits = source_git.CheckoutLimits(max_bytes=1024, max_entries=3)
    assert fetch(repo.url, sha=repo.shas["c1"], limits=limits).sha == repo.shas["c1"]
    assert (fetch.dest / "app.py").exists()


def test_git_home_is_removed_after_the_fetch(repo: SampleRepo, fetch: Fetch) -> None:
    fetch(repo.url, branch="main")
    assert [p.name for p in fetch.dest.parent.iterdir() if p.name.startswith(".git-home")] == []
