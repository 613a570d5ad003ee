"""git's network side attacked for real on loopback: DNS rebinding between the address
check and git's own lookup, redirects to an internal service, and a token on git's argv.

The twin servers listen on the same port of 127.0.0.2 (the "public" address the policy
approved: allowed as a network here) and 127.0.0.1 (the internal service). The policy's
resolver is told that ``localhost`` is 127.0.0.2 while the system — and so git, if it
resolves again — says 127.0.0.1: exactly what a rebinding DNS server answers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.pipeline import remote_policy, source_git
from shipyard.pipeline.errors import SourceError
from shipyard.pipeline.git_remote import remote_access
from shipyard.pipeline.mirror import fetch_via_mirror, push_diff, read_refs_via_mirror
from shipyard.pipeline.remote_policy import RemotePin, check_remote
from shipyard.pipeline.source_git import (
    check_repository_url,
    fetch_source,
    list_remote_head,
    list_remote_refs,
)
from tests.helpers.git_http import GitHttp, git_http_server, twin_servers

PUBLIC = ("127.0.0.2/32",)


def _bare(root: Path, name: str, files: dict[str, str]) -> str:
    """A bare repository ``root/name`` with one commit of ``files`` on main; its sha."""
    work = root / f"{name}-work"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(work)], check=True)
    for path, text in files.items():
        (work / path).write_text(text)
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    subprocess.run(["git", "commit", "-q", "-m", name], cwd=work, check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / name)], check=True)
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy's resolver answers 127.0.0.2 for ``localhost``; everyone else still gets
    127.0.0.1 from the system."""
    real = remote_policy.lookup

    def answer(host: str, port: int) -> list[tuple[Any, ...]]:
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return real(host, port)

    monkeypatch.setattr(remote_policy, "lookup", answer)


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[GitHttp, GitHttp, str]]:
    public_root, internal_root = tmp_path / "public", tmp_path / "internal"
    public_root.mkdir()
    internal_root.mkdir()
    sha = _bare(public_root, "repo.git", {"app.txt": "public\n"})
    _bare(internal_root, "repo.git", {"secret.txt": "internal\n"})
    with twin_servers(public_root, internal_root) as (public, internal):
        yield public, internal, sha


def _pin(url: str) -> RemotePin | None:
    return check_remote(url, allow_private=False, allowed_networks=PUBLIC)


def test_the_harness_rebinds_git_without_a_pin(
    rebinding: None, twins: tuple[GitHttp, GitHttp, str]
) -> None:
    """Control: the policy approves 127.0.0.2, yet an unpinned git lands on 127.0.0.1."""
    public, internal, _sha = twins
    url = public.url("repo.git", host="localhost")
    assert _pin(url) == RemotePin("localhost", public.port, ("127.0.0.2",))
    list_remote_refs(url, ["refs/heads/*"], timeout_s=30)
    assert internal.requests and not public.requests


def test_every_host_side_git_call_uses_the_checked_address(
    rebinding: None,
    twins: tuple[GitHttp, GitHttp, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy of the environment would resolve the name itself: it is not used.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    public, internal, sha = twins
    url = public.url("repo.git", host="localhost")
    pin = _pin(url)
    quiet = threading.Event()
    common: dict[str, Any] = {"timeout_s": 30.0, "pin": pin}

    assert list_remote_refs(url, ["refs/heads/*"], **common) == {"refs/heads/main": sha}
    assert list_remote_head(url, "main", on_line=lambda _l: None, cancel=quiet, **common) == sha
    fetched = fetch_source(url, tmp_path / "a" / "src", sha=None, branch="main",
                           pull_request_id=None, rules=None, on_line=lambda _l: None,
                           cancel=quiet, full_clone=True, **common)  # fmt: skip
    assert (fetched.path / "app.txt").read_text() == "public\n"
    mirror = tmp_path / "mirrors" / "p" / "m.git"
    fetched = fetch_via_mirror(url, tmp_path / "b" / "src", mirror, sha=sha, branch=None,
                               pull_request_id=None, rules=None, on_line=lambda _l: None,
                               cancel=quiet, full_clone=True, **common)  # fmt: skip
    assert (fetched.path / "app.txt").read_text() == "public\n"
    assert read_refs_via_mirror(url, mirror, **common)["refs/heads/main"] == sha
    diff = push_diff(url, mirror, before="0" * 40, after=sha, ref="refs/heads/main",
                     base_branch="main", **common)  # fmt: skip
    assert diff.head_message.strip() == "repo.git"

    assert public.requests
    assert internal.requests == [], "git resolved the host again and reached 127.0.0.1"


def test_a_redirect_to_an_internal_address_is_not_followed(tmp_path: Path) -> None:
    internal_root = tmp_path / "internal"
    internal_root.mkdir()
    _bare(internal_root, "repo.git", {"secret.txt": "internal\n"})
    with git_http_server(internal_root) as internal:
        target = f"http://127.0.0.1:{internal.port}"
        with git_http_server(tmp_path, address="127.0.0.2", redirect_to=target) as redirector:
            url = redirector.url("repo.git")
            # Control: git's default (follow the first request's redirects) reaches it.
            done = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True,
                                  timeout=30, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})  # fmt: skip
            reached = len(internal.requests)
            assert done.returncode == 0 and reached > 0
            pin = _pin(url)
            quiet = threading.Event()
            with pytest.raises(SourceError):
                list_remote_refs(url, ["refs/heads/*"], timeout_s=30, pin=pin)
            with pytest.raises(SourceError):
                fetch_source(url, tmp_path / "a" / "src", sha=None, branch="main",
                             pull_request_id=None, rules=None, on_line=lambda _l: None,
                             cancel=quiet, timeout_s=30, pin=pin)  # fmt: skip
            with pytest.raises(SourceError):
                read_refs_via_mirror(url, tmp_path / "m" / "p" / "m.git", timeout_s=30, pin=pin)
        assert len(redirector.requests) >= 3
        assert len(internal.requests) == reached, "a redirect was followed to the internal address"


def _cmdlines() -> list[bytes]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
    return found


def test_the_token_is_never_on_any_command_line_nor_in_the_mirror(tmp_path: Path) -> None:
    token = "tok-" + base64.b32encode(os.urandom(10)).decode().lower()
    sha = _bare(tmp_path, "repo.git", {"app.txt": "private\n"})
    expected = "Basic " + base64.b64encode(f"deploy:{token}".encode()).decode()
    mirror = tmp_path / "mirrors" / "p" / "m.git"
    with git_http_server(tmp_path, authorization=expected, delay_s=0.3) as server:
        url = f"http://deploy:{token}@127.0.0.1:{server.port}/repo.git"
        failures: list[BaseException] = []

        def fetch() -> None:
            try:
                fetch_via_mirror(url, tmp_path / "w" / "src", mirror, sha=None, branch="main",
                                 pull_request_id=None, rules=None, on_line=lambda _l: None,
                                 cancel=threading.Event(), timeout_s=60, include_git_folder=True)  # fmt: skip
                fetch_source(url, tmp_path / "w2" / "src", sha=None, branch="main",
                             pull_request_id=None, rules=None, on_line=lambda _l: None,
                             cancel=threading.Event(), timeout_s=60)  # fmt: skip
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=fetch)
        thread.start()
        seen_git = 0
        while thread.is_alive():
            for cmdline in _cmdlines():
                assert token.encode() not in cmdline, cmdline.replace(b"\0", b" ")
                if cmdline.startswith(b"git\0") and str(server.port).encode() in cmdline:
                    seen_git += 1
            time.sleep(0.01)
        thread.join()
        assert not failures, failures
        assert seen_git > 0, "no git process was seen while fetching: the scan proved nothing"
        assert server.requests and all(
            r.headers.get("authorization") == expected for r in server.requests
        )
    for root in (mirror, tmp_path / "w" / "src" / ".git", tmp_path / "w2" / "src" / ".git"):
        for path in root.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path
    assert (tmp_path / "w2" / "src" / "app.txt").read_text() == "private\n"
    assert sha


def test_remote_access_keeps_secrets_off_the_command_line() -> None:
    pin = RemotePin("git.example.com", 443, ("93.184.216.34", "2606:2800:220:1::1"))
    https = remote_access("https://x-token:s%40cret@git.example.com/a/b.git", pin)
    assert https.url == "https://git.example.com/a/b.git"
    assert https.config == (
        "http.curloptResolve=git.example.com:443:93.184.216.34,[2606:2800:220:1::1]",
        "http.proxy=",
    )
    header = https.env["GIT_CONFIG_VALUE_0"]
    assert base64.b64decode(header.removeprefix("Authorization: Basic ")) == b"x-token:s@cret"
    assert https.env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    bare_token = remote_access("https://ghp_abc@git.example.com/a.git")
    assert base64.b64decode(bare_token.env["GIT_CONFIG_VALUE_0"].split()[-1]) == b"ghp_abc:"
    ssh_pin = RemotePin("git.example.com", 2222, ("93.184.216.34",))
    ssh = remote_access("ssh://git:pw@git.example.com:2222/a.git", ssh_pin)
    assert ssh.url == "ssh://git@93.184.216.34:2222/a.git"
    assert ssh.ssh_host_alias == "[git.example.com]:2222"
    scp = remote_access("git@git.example.com:a/b.git", RemotePin("git.example.com", 22, ("::1",)))
    assert (scp.url, scp.ssh_host_alias) == ("git@[::1]:a/b.git", "git.example.com")
    assert remote_access("file:///srv/r.git").url == "file:///srv/r.git"
    # Whatever the userinfo holds, git is given the host Python parsed (and the policy
    # checked), with nothing before it.
    odd = remote_access("http://127.0.0.1\\@git.example.com/r.git")
    assert odd.url == "http://git.example.com/r.git"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1\\.git.example.com/r.git",  # parsers could disagree on the host
        "http://loc%61lhost/r.git",
        "https://bücher.example/r.git",  # IDN: curl looks up another spelling than Python
        "https://xn--bcher-kva.example:99999999/r.git",
    ],
)
def test_hosts_parsers_could_read_differently_are_refused(url: str) -> None:
    with pytest.raises(SourceError, match="unsupported repository URL"):
        check_repository_url(url)


def test_a_fetch_cannot_write_more_than_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's repository of huge tips must not fill the data dir the mirrors share with
    the database and registry (the branches endpoint fetches on the host)."""
    monkeypatch.setattr(source_git, "MAX_FETCH_FILE_BYTES", 256 * 1024)
    _bare(tmp_path, "repo.git", {"big.bin": os.urandom(1024 * 1024).hex()})
    mirror = tmp_path / "mirrors" / "p" / "m.git"
    with git_http_server(tmp_path) as server:
        url = server.url("repo.git")
        with pytest.raises(SourceError, match="more than 262144 bytes in one fetch"):
            read_refs_via_mirror(url, mirror, timeout_s=30)
        with pytest.raises(SourceError, match="more than 262144 bytes in one fetch"):
            fetch_source(url, tmp_path / "w" / "src", sha=None, branch="main",
                         pull_request_id=None, rules=None, on_line=lambda _l: None,
                         cancel=threading.Event(), timeout_s=30)  # fmt: skip
    sizes = [p.stat().st_size for p in mirror.rglob("*") if p.is_file()]
    assert max(sizes) <= 256 * 1024
