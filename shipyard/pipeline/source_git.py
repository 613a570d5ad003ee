"""Fetch exactly the commit to build from a git repository (DESIGN.md, git row).

``git init`` + ``git fetch --depth 1 <url> <sha>`` + ``git checkout``: cost follows the tree,
not the history. Only when the server refuses a want by id, or when path rules need history
to pick the most recent relevant commit, is more than one commit fetched.

The URL is given to ``git fetch`` directly and never stored in ``.git/config``: the checkout
is the build context, so a token in the remote URL would otherwise end up in any image that
does ``COPY . .``. Git itself records only the credential-free URL in ``FETCH_HEAD``.

git runs with none of the host's configuration (issue 9, item 6): no system or global
gitconfig, no credential helpers, no ssh agent, ssh config or the server user's keys, no
inherited environment but a few basics, and only the network transports (``file://`` only
for a repository under an allowed local root). A checkout is refused above size and entry
limits, counted from the commit's tree before any file is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shipyard.builds.refs import is_valid_branch, is_valid_sha
from shipyard.builds.relevant_commit import PathRules, most_recent_relevant
from shipyard.pipeline.errors import SourceError, TimedOut
from shipyard.pipeline.git_remote import RemoteAccess, remote_access
from shipyard.pipeline.process import Completed, LineSink, run
from shipyard.pipeline.remote_policy import RemotePin

# Path rules: history fetched in these steps (total depth) before giving up and building the
# tip. Most repositories find a relevant commit in the first step.
RELEVANT_DEPTHS: tuple[int, ...] = (50, 200, 1000)
# A sha the server will not send by id is searched for in the branch at these depths, then
# in the full history of the branch.
SHA_SEARCH_DEPTHS: tuple[int, ...] = (50, 1000)

_URL_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})
# scp-like ``[user@]host:path``. The user and host may not start with "-" (they reach ssh as
# an argument), and "host::x" is refused because git reads it as a remote-helper transport
# ("ext::sh -c …" runs commands).
_SCP_LIKE = re.compile(
    r"^(?:[A-Za-z0-9_][A-Za-z0-9._~%+-]*@)?"
    r"(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"
    r":(?!:)[^\s].*$"
)
_PLAIN_HOSTPORT = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
# Variables that would point git at another repository than ``dest`` (the list of
# ``git rev-parse --local-env-vars``); inherited ones are dropped.
_REPO_LOCAL_VARS = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
    }
)
# The largest file a git that talks to a server may write (RLIMIT_FSIZE, inherited by
# index-pack): every fetch keeps its pack as one file (``fetch.unpackLimit=1``), so this caps
# what one fetch can put on the disk. The mirrors live in Shipyard's data dir, beside the
# database and the registry, and the branches endpoint or a webhook makes the host fetch a
# tenant's repository: without a cap a repository of huge tips fills that disk.
MAX_FETCH_FILE_BYTES = 4 * 1024 * 1024 * 1024
# SIGXFSZ ignored: a write past the limit fails with EFBIG, which git reports (a signal
# would kill index-pack silently).
_IGNORE_XFSZ = ("/bin/sh", "-c", 'trap "" XFSZ; exec "$@"', "sh")
_FILE_TOO_LARGE = "File too large"
# Flags common to every network fetch: tags and submodules are not part of "one commit".
_FETCH = ("fetch", "--no-tags", "--no-recurse-submodules")
# The only variables taken from the service's environment: where programs are, and how the
# operator's network reaches the outside (proxies — ignored for a remote whose address is
# pinned, see git_remote — and the CA bundle). Nothing that names a
# configuration, a credential or an agent (HOME, XDG_*, GIT_*, SSH_AUTH_SOCK, …).
_INHERITED_VARS = (
    "PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
# ssh for git: no config file, agent, user known-hosts file or key of the server's user (ssh
# finds those through the passwd entry, not $HOME); hosts must be in the operator's
# /etc/ssh/ssh_known_hosts. A deploy key comes in as GIT_SSH_COMMAND through ``env``.
SSH_COMMAND = (
    "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/dev/null "
    "-o IdentityAgent=none -o UserKnownHostsFile=/dev/null "
    "-o GlobalKnownHostsFile=/etc/ssh/ssh_known_hosts -o StrictHostKeyChecking=yes"
)
# Configuration given to every git command (``-c``), over git's built-in defaults only.
_GIT_CONFIG = (
    "credential.helper=",  # an empty value resets the list of helpers
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "protocol.allow=never",  # every transport not named below, remote helpers included
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
    # Keep a fetched pack as it came: below the default limit (100 objects) git explodes it
    # into loose objects, zlib-compressing every blob again (measured: 1.5 s of a 20 MB
    # cold fetch). Packs of the mirror are consolidated by ``gc --auto``.
    "fetch.unpackLimit=1",
    # A redirect would take git to a host the address policy never checked (an internal
    # service, the metadata address); git's default follows the first request's redirects.
    "http.followRedirects=false",
    # A server's advertised bundle URI would be another URL git downloads, never checked.
    "transfer.bundleURI=false",
)


@dataclass(frozen=True)
class CheckoutLimits:
    """What one checkout may hold (summed blob sizes, tree entries), like a bundle's limits."""

    max_bytes: int = 512 * 1024 * 1024
    max_entries: int = 200_000


@dataclass(frozen=True)
class FetchedSource:
    sha: str
    branch: str | None
    path: Path
    # Committer time (unix seconds): the image's ``created`` and buildah's ``--timestamp``.
    commit_time: int | None = None


def strip_userinfo(text: str) -> str:
    """``https://user:token@host/x`` → ``https://host/x`` anywhere in ``text``."""
    return _USERINFO.sub(r"\g<scheme>", text)


def check_repository_url(url: str) -> None:
    """Refuse anything git could read as an option, a remote helper or a relative path."""
    refused = SourceError(f"unsupported repository URL {strip_userinfo(url)!r}")
    if not url or url.startswith("-") or _CONTROL_CHARS.search(url):
        raise refused
    if url.startswith("/"):
        return
    if "://" not in url:
        if _SCP_LIKE.match(url):
            return
        raise refused
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise refused
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise refused
        return
    host = parts.hostname or ""
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise refused
    # Only plain ASCII names and IP literals: where Python's URL parser and curl's could
    # disagree about the host ("\\", "%"-escapes, IDN spellings), the address policy would
    # check one host and git connect to another.
    if not _PLAIN_HOSTPORT.match(parts.netloc.rpartition("@")[2]):
        raise refused


def local_repository_path(url: str) -> str | None:
    """The path of a local repository URL (an absolute path or ``file://``), else None.

    ``url`` has passed ``check_repository_url``."""
    if url.startswith("/"):
        return url
    if url[:7].lower() == "file://":
        rest = url[7:]
        return rest[len("localhost") :] if rest.lower().startswith("localhost") else rest
    return None


def check_local_repository(url: str, allowed_roots: Sequence[Path]) -> bool:
    """True if ``url`` is a local repository under one of ``allowed_roots`` (symlinks
    resolved on both sides), False if it is not local; ``SourceError`` if it is local and
    not allowed: by default no repository on the server's disk may be built."""
    path = local_repository_path(url)
    if path is None:
        return False
    shown = strip_userinfo(url)
    if not allowed_roots:
        raise SourceError(
            f"local repository URLs are not allowed ({shown}); an operator can allow "
            "repositories under given directories with SHIPYARD_ALLOWED_LOCAL_ROOTS"
        )
    # git would read these differently from a path (percent-decoding, ?query, #fragment).
    if any(ch in path for ch in "%?#"):
        raise SourceError(f"unsupported repository URL {shown!r}")
    real = os.path.realpath(path)
    for root in allowed_roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip("/") + "/"):
            return True
    raise SourceError(
        f"local repository {shown} is not under any of SHIPYARD_ALLOWED_LOCAL_ROOTS "
        f"({', '.join(str(root) for root in allowed_roots)})"
    )


def git_env(extra: Mapping[str, str] | None, *, home: Path) -> dict[str, str]:
    """Environment for git that reads no host configuration and never waits for a human.

    Built from scratch (``_INHERITED_VARS`` only); ``home`` is an empty directory, so no
    ``~/.gitconfig``, ``~/.git-credentials`` or XDG file is found even without
    ``GIT_CONFIG_GLOBAL``. ``extra`` (e.g. ``GIT_SSH_COMMAND`` with a deploy key) comes from
    Shipyard itself and is layered on top; only ``GIT_TERMINAL_PROMPT`` is forced.
    """
    env = {name: os.environ[name] for name in _INHERITED_VARS if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    false = shutil.which("false") or "/bin/false"
    env.update(
        {
            # Untranslated messages: _detail() looks for git's "fatal: " prefix.
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_SYSTEM": os.devnull,
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_ASKPASS": false,
            "SSH_ASKPASS": false,
            "SSH_ASKPASS_REQUIRE": "never",
            "GCM_INTERACTIVE": "never",
            "GIT_SSH_COMMAND": SSH_COMMAND,
        }
    )
    env.update(extra or {})
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


class _Git:
    """Runs git steps in one repository under one overall deadline and cancel event."""

    def __init__(
        self,
        cwd: Path | None,
        *,
        log: LineSink,
        cancel: threading.Event,
        timeout_s: float,
        env: Mapping[str, str] | None,
        home: Path,
        allow_file: bool,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self.cwd = cwd
        # E.g. enter the build's network namespace, so git obeys the build's network policy.
        self._wrap = wrap or (lambda argv: argv)
        self.log = log
        self._cancel = cancel
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._env = git_env(env, home=home)
        allowed = "always" if allow_file else "never"
        self._config = tuple(
            arg for item in (*_GIT_CONFIG, f"protocol.file.allow={allowed}") for arg in ("-c", item)
        )
        self._max_file_bytes: int | None = None

    def use(self, access: RemoteAccess) -> None:
        """Talk to the remote of ``access``: its (non-secret) configuration on the command
        line, its credentials in the environment, ssh checking the host key of the name, and
        no file larger than ``MAX_FETCH_FILE_BYTES``."""
        self._max_file_bytes = MAX_FETCH_FILE_BYTES
        self._config = (*self._config, *(arg for item in access.config for arg in ("-c", item)))
        self._env.update(access.env)
        if access.ssh_host_alias is not None:
            # GIT_SSH_COMMAND is run by a shell: the name is quoted.
            alias = shlex.quote(access.ssh_host_alias)
            self._env["GIT_SSH_COMMAND"] += f" -o HostKeyAlias={alias}"

    def run(self, *args: str, sink: LineSink | None = None) -> Completed:
        """Run ``git args``; output goes to the build log unless ``sink`` collects it."""
        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimedOut("no time left")
            argv = ["git", *self._config, *args]
            if self._max_file_bytes is not None:
                argv = ["prlimit", f"--fsize={self._max_file_bytes}", "--", *_IGNORE_XFSZ, *argv]
            return run(
                self._wrap(argv),
                on_line=sink or self.log,
                cancel=self._cancel,
                timeout_s=remaining,
                cwd=self.cwd,
                env=self._env,
            )
        except TimedOut as exc:
            # The whole fetch shares one budget; report it, not the step that ran out.
            raise TimedOut(f"fetching the source timed out after {self._timeout_s:g} s") from exc

    def output(self, *args: str) -> tuple[int, str]:
        """Run a query whose output is data, not log: returns (returncode, stdout+stderr)."""
        lines: list[str] = []
        completed = self.run(*args, sink=lines.append)
        return completed.returncode, "\n".join(lines)

    def checked(self, *args: str) -> None:
        completed = self.run(*args)
        if completed.returncode != 0:
            raise SourceError(f"git {args[0]} failed: {_detail(completed.tail)}")

    def has_commit(self, sha: str) -> bool:
        return self.output("cat-file", "-e", f"{sha}^{{commit}}")[0] == 0

    def check_tree(self, sha: str, limits: CheckoutLimits) -> None:
        """Refuse the checkout of ``sha`` above ``limits``, from ``git ls-tree`` (object
        sizes, before any file is written). Counted line by line: the listing of a large
        tree is never held in memory."""
        entries = 0
        total = 0

        def count(line: str) -> None:
            nonlocal entries, total
            # "<mode> <type> <object> <size>\t<path>"; size is "-" for submodules.
            meta = line.partition("\t")[0].split()
            if len(meta) == 4:
                entries += 1
                if meta[3].isdigit():
                    total += int(meta[3])

        completed = self.run("ls-tree", "-r", "-l", "--full-tree", sha, sink=count)
        if completed.returncode != 0:
            raise SourceError(f"git ls-tree failed: {_detail(completed.tail)}")
        if entries > limits.max_entries:
            raise SourceError(
                f"the checkout of {sha[:12]} has {entries} entries, more than "
                f"{limits.max_entries} (SHIPYARD_MAX_CHECKOUT_ENTRIES)"
            )
        if total > limits.max_bytes:
            raise SourceError(
                f"the checkout of {sha[:12]} is {total} bytes, more than {limits.max_bytes} "
                "(SHIPYARD_MAX_CHECKOUT_BYTES)"
            )

    def rev_parse(self, rev: str) -> str:
        rc, out = self.output("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        sha = out.strip()
        if rc != 0 or not is_valid_sha(sha):
            raise SourceError(f"could not resolve {rev} after fetching")
        return sha


def _detail(tail: Sequence[str]) -> str:
    """The line of git's output that says why it failed (``fatal: …`` is usually last)."""
    if any(_FILE_TOO_LARGE in line for line in tail):
        return (
            f"the server sent more than {MAX_FETCH_FILE_BYTES} bytes in one fetch (the limit "
            "of what one fetch may write)"
        )
    for line in reversed(tail):
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return strip_userinfo(line[len(prefix) :].strip())
    lines = [line.strip() for line in tail if line.strip()]
    return strip_userinfo(lines[-1]) if lines else "no output"


@dataclass(frozen=True)
class _Ref:
    """What to fetch when not fetching by sha, and how to name it to the user."""

    name: str  # full ref name as the server knows it
    label: str  # "branch 'main'", "pull request 7", "the default branch"
    missing: str  # the error when the server has no such ref


class _Fetcher:
    # Where the repository's git dir is when it is not ``<cwd>/.git`` (a bare mirror).
    git_dir: Path | None = None

    def __init__(
        self, git: _Git, url: str, remote: _Git | None = None, pin: RemotePin | None = None
    ) -> None:
        self.git = git
        # The git that talks to the server (fetch, ls-remote): may run inside the build's
        # network namespace while local queries (``git``) need not.
        self.remote = remote or git
        # Credentials go to git's environment, never its argv; ``pin``: the addresses the
        # policy checked, the only ones git may connect to (git_remote).
        self.access = remote_access(url, pin)
        self.remote.use(self.access)
        self.url = self.access.url
        self.public_url = strip_userinfo(url)

    def fetch(self, *options: str, ref: str) -> Completed:
        # --end-of-options: the URL and refspec can never be read as options.
        return self.remote.run(*_FETCH, *options, "--end-of-options", self.url, ref)

    def ls_remote(self, *patterns: str) -> dict[str, str]:
        """``git ls-remote``: {ref: sha} of what the server lists for ``patterns``."""
        rc, out = self.remote.output("ls-remote", "--end-of-options", self.url, *patterns)
        if rc != 0:
            raise SourceError(
                f"could not read from repository {self.public_url}: "
                f"{strip_userinfo(_detail(out.splitlines()[-20:]))}"
            )
        found: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name and is_valid_sha(sha):
                found[name] = sha
        return found

    def remote_refs(self, *refs: str) -> dict[str, str]:
        """{ref: sha} for those of ``refs`` the server has."""
        # ls-remote matches patterns by suffix; keep only exact names.
        return {name: sha for name, sha in self.ls_remote(*refs).items() if name in refs}

    def head_branch(self, sha: str, pull_request_id: int) -> str | None:
        """The branch of pull request ``pull_request_id`` if the remote names it: a branch
        whose tip is ``sha`` while the PR's head ref (GitHub's ``refs/pull/N/head``, else
        GitLab's ``refs/merge-requests/N/head``) is ``sha`` too. Several: the first by name
        (deterministic). None if the head is elsewhere (a fork) or the listing fails."""
        github = f"refs/pull/{pull_request_id}/head"
        gitlab = f"refs/merge-requests/{pull_request_id}/head"
        try:
            listed = self.ls_remote("refs/heads/*", github, gitlab)
        except SourceError:
            return None
        heads: list[str] = []
        found: dict[str, str] = {}
        for name, ref_sha in listed.items():
            if name in (github, gitlab):
                found[name] = ref_sha
            elif ref_sha == sha and name.startswith("refs/heads/"):
                branch = name.removeprefix("refs/heads/")
                if is_valid_branch(branch):
                    heads.append(branch)
        if found.get(github, found.get(gitlab)) != sha or not heads:
            return None
        return min(heads)

    def fail(self, ref: _Ref, failed: Completed) -> SourceError:
        """Why fetching ``ref`` failed: asking the server separates "no such ref" from
        "unreachable / no access" without parsing git's (translatable) messages."""
        if ref.name not in self.remote_refs(ref.name):
            return SourceError(ref.missing)
        return SourceError(
            f"could not fetch {ref.label} from {self.public_url}: {_detail(failed.tail)}"
        )

    def fetch_ref(self, ref: _Ref, *, depth: int) -> str:
        """Fetch ``ref`` at ``depth``; returns the sha it points at."""
        completed = self.fetch("--depth", str(depth), ref=ref.name)
        if completed.returncode != 0:
            raise self.fail(ref, completed)
        return self.git.rev_parse("FETCH_HEAD")

    def fetch_sha(self, sha: str, find_ref: Callable[[], _Ref | None]) -> None:
        """One commit by id; else search the ref (or every branch and tag) for it.

        ``find_ref`` is only called on that fallback: for a pull request it costs a round
        trip to the server.
        """
        self.git.log(f"Fetching commit {sha} from {self.public_url}")
        if self.fetch("--depth", "1", ref=sha).returncode == 0 and self.git.has_commit(sha):
            return
        ref = find_ref()
        if ref is None:
            self.git.log(f"The server did not send {sha[:12]} by id; fetching all branches")
            self._fetch_everything()
        else:
            self.git.log(f"The server did not send {sha[:12]} by id; searching {ref.label}")
            self._search_ref(sha, ref)
        if not self.git.has_commit(sha):
            raise SourceError(f"commit {sha} not found on remote")

    def _fetch_everything(self) -> None:
        completed = self.git.run(
            *_FETCH,
            "--end-of-options",
            self.url,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        )
        if completed.returncode != 0:
            raise SourceError(f"could not fetch from {self.public_url}: {_detail(completed.tail)}")

    def _search_ref(self, sha: str, ref: _Ref) -> None:
        fetched = 0
        for depth in SHA_SEARCH_DEPTHS:
            if fetched == 0:
                self.fetch_ref(ref, depth=depth)
            else:
                self._deepen(ref, depth - fetched)
            fetched = depth
            if self.git.has_commit(sha):
                return
        if _is_shallow(self.git):
            completed = self.fetch("--unshallow", ref=ref.name)
            if completed.returncode != 0:
                raise self.fail(ref, completed)

    def _deepen(self, ref: _Ref, by: int) -> None:
        self.git.log(f"Fetching {by} more commits of {ref.label}")
        completed = self.fetch(f"--deepen={by}", ref=ref.name)
        if completed.returncode != 0:
            raise self.fail(ref, completed)

    def fetch_relevant(self, ref: _Ref, rules: PathRules) -> str:
        """The most recent commit of ``ref`` whose changes and message pass ``rules``, else
        its tip."""
        tip = self.fetch_ref(ref, depth=RELEVANT_DEPTHS[0])
        fetched = RELEVANT_DEPTHS[0]
        for next_depth in (*RELEVANT_DEPTHS[1:], None):
            walk = _Walk(self.git, tip, limit=RELEVANT_DEPTHS[-1], git_dir=self.git_dir)
            found = most_recent_relevant(walk, rules)
            if found is not None:
                skipped = walk.seen - 1
                note = f" (skipped {skipped} newer commits)" if skipped else " (the tip)"
                self.git.log(f"Most recent relevant commit on {ref.label}: {found[:12]}{note}")
                return found
            if not walk.hit_boundary:
                # The walk saw the whole first-parent history, or the limit: nothing is
                # relevant, and building nothing is not an option.
                break
            if next_depth is None:
                break
            self._deepen(ref, next_depth - fetched)
            fetched = next_depth
        self.git.log(
            f"No commit among the last {walk.seen} of {ref.label} is relevant (path rules, "
            f"commit ignore flags); building the tip {tip[:12]}"
        )
        return tip


def _is_shallow(git: _Git) -> bool:
    return git.output("rev-parse", "--is-shallow-repository")[1].strip() == "true"


class _Walk:
    """``git log`` of ``tip`` as (sha, changed paths, message), newest first, along first
    parents.

    First parents only: a commit from a merged side branch is not a state of this branch,
    and the merge commit itself is judged by what it brought in (its diff to the first
    parent). The walk stops before a shallow-boundary commit: its parents were not fetched,
    so git would show it as adding every file, which would make it look relevant.

    git writes the log to a file (``--output``), read back as bytes: messages and paths keep
    every character (no line splitting or cutting by the process runner), and each commit's
    header carries a random marker, so no message or path can pass for one.
    """

    def __init__(self, git: _Git, tip: str, *, limit: int, git_dir: Path | None = None) -> None:
        self._git = git
        self._git_dir = git_dir  # a bare repository (the mirror); else <cwd>/.git
        self._tip = tip
        self._limit = limit
        self.seen = 0
        self.hit_boundary = False

    def __iter__(self) -> Iterator[tuple[str, list[str], str]]:
        assert self._git.cwd is not None
        git_dir = self._git_dir or self._git.cwd / ".git"
        shallow_file = git_dir / "shallow"
        boundary: set[str] = set()
        if shallow_file.exists():
            boundary = set(shallow_file.read_text().split())
        marker = secrets.token_hex(16)
        out_file = git_dir / f"shipyard-walk-{marker}"
        try:
            rc, out = self._git.output(
                "log",
                "-z",
                "--first-parent",
                "--diff-merges=first-parent",
                "--no-renames",  # a move lists both paths: leaving docs/ can matter
                "--name-only",
                f"--format={marker}%H%x00%B",
                f"--max-count={self._limit}",
                f"--output={out_file}",
                self._tip,
                "--",
            )
            if rc != 0:
                raise SourceError(f"git log failed: {_detail(out.splitlines()[-20:])}")
            data = out_file.read_bytes()
        finally:
            out_file.unlink(missing_ok=True)
        for sha, paths, message in parse_log(data.decode("utf-8", "replace"), marker):
            if sha in boundary:
                self.hit_boundary = True
                return
            self.seen += 1
            yield sha, paths, message


def parse_log(out: str, marker: str) -> Iterator[tuple[str, list[str], str]]:
    """Parse ``git log -z --name-only --format=<marker>%H%x00%B``.

    Each commit is "<marker><sha>\0<message>\0" then, if it changed files,
    "\n<path>\0<path>\0…". The message is the one token after its header whatever it holds
    (it is empty for an empty message); a later token is a header only if it is the marker
    and a sha, which no path (the first one starts with "\n") or message can forge without
    knowing the random marker.
    """
    sha: str | None = None
    message: str | None = None
    paths: list[str] = []
    for token in out.split("\0"):
        if token.startswith(marker) and is_valid_sha(token[len(marker) :]):
            if sha is not None:
                yield sha, paths, message or ""
            sha, message, paths = token[len(marker) :], None, []
        elif sha is None:
            continue
        elif message is None:
            message = token
        elif token:
            paths.append(token.removeprefix("\n"))
    if sha is not None:
        yield sha, paths, message or ""


def _pick_ref(fetcher: _Fetcher, branch: str | None, pull_request_id: int | None) -> _Ref:
    if pull_request_id is not None:
        github = f"refs/pull/{pull_request_id}/head"
        gitlab = f"refs/merge-requests/{pull_request_id}/head"
        missing = (
            f"pull request {pull_request_id} not found on remote (tried {github} and {gitlab})"
        )
        found = fetcher.remote_refs(github, gitlab)
        name = github if github in found else gitlab
        if name not in found:
            raise SourceError(missing)
        return _Ref(name, f"pull request {pull_request_id}", missing)
    if branch is not None:
        return _Ref(
            f"refs/heads/{branch}", f"branch '{branch}'", f"branch '{branch}' not found on remote"
        )
    return _Ref("HEAD", "the default branch", "the remote has no default branch (HEAD)")


def _validate(
    url: str,
    sha: str | None,
    branch: str | None,
    pull_request_id: int | None,
    allowed_local_roots: Sequence[Path],
) -> bool:
    """Refuse what may not be fetched; True if ``url`` is an allowed local repository."""
    check_repository_url(url)
    local = check_local_repository(url, allowed_local_roots)
    if sha is not None and not is_valid_sha(sha):
        raise SourceError(f"invalid commit sha {sha!r} (expected 40 lowercase hex digits)")
    if branch is not None and not is_valid_branch(branch):
        raise SourceError(f"invalid branch name {branch!r}")
    if pull_request_id is not None and (isinstance(pull_request_id, bool) or pull_request_id <= 0):
        raise SourceError(f"invalid pull request number {pull_request_id!r}")
    return local


def fetch_source(
    url: str,
    dest: Path,
    *,
    sha: str | None,
    branch: str | None,
    pull_request_id: int | None,
    rules: PathRules | None,
    on_line: LineSink,
    cancel: threading.Event,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    allowed_local_roots: Sequence[Path] = (),
    limits: CheckoutLimits = CheckoutLimits(),
    wrap: Callable[[list[str]], list[str]] | None = None,
    full_clone: bool = False,
    pin: RemotePin | None = None,
) -> FetchedSource:
    """Check out one commit of ``url`` into ``dest`` (created if missing).

    - ``sha``: that commit (``branch``/``pull_request_id`` are only searched if the server
      will not send it by id; it is not checked to be on them).
    - else ``pull_request_id``: the head of ``refs/pull/N/head`` or
      ``refs/merge-requests/N/head``; else ``branch``; else the remote's default branch.
      A pull request's build reports as its branch the branch whose tip the remote shows at
      the PR's head, if there is one (``FetchedSource.branch``; else None).
    - without ``sha`` and with ``rules`` that have patterns or commit ignore flags: the most
      recent relevant commit of that ref (see ``shipyard.builds.relevant_commit``), or its
      tip if none is found.

    ``timeout_s`` bounds the whole fetch. ``allowed_local_roots``: directories whose
    repositories may be fetched by path or ``file://`` (none by default). ``limits``: refused
    above them. ``full_clone``: the commit's whole history too (Northflank's
    ``fullGitClone``), not only the commit. ``pin``: the addresses ``check_remote`` approved
    (git connects to those only). Raises ``SourceError``, ``TimedOut``, ``Cancelled``.
    """
    local = _validate(url, sha, branch, pull_request_id, allowed_local_roots)
    dest.mkdir(parents=True, exist_ok=True)
    # HOME for git: empty, beside the checkout (in the build's work dir), gone afterwards.
    with tempfile.TemporaryDirectory(prefix=".git-home-", dir=dest.parent) as home:
        return _fetch(
            url,
            dest,
            sha=sha,
            branch=branch,
            pull_request_id=pull_request_id,
            rules=rules,
            git=_Git(
                dest,
                log=lambda line: on_line(strip_userinfo(line)),
                cancel=cancel,
                timeout_s=timeout_s,
                env=env,
                home=Path(home),
                allow_file=local,
                wrap=wrap,
            ),
            limits=limits,
            full_clone=full_clone,
            pin=pin,
        )


def _fetch(
    url: str,
    dest: Path,
    *,
    sha: str | None,
    branch: str | None,
    pull_request_id: int | None,
    rules: PathRules | None,
    git: _Git,
    limits: CheckoutLimits,
    full_clone: bool = False,
    pin: RemotePin | None = None,
) -> FetchedSource:
    git.checked("init", "-q", ".")
    fetcher = _Fetcher(git, url, pin=pin)
    if sha is not None:

        def find_ref() -> _Ref | None:
            if branch is None and pull_request_id is None:
                return None
            return _pick_ref(fetcher, branch, pull_request_id)

        fetcher.fetch_sha(sha, find_ref)
    else:
        ref = _pick_ref(fetcher, branch, pull_request_id)
        git.log(f"Fetching {ref.label} from {fetcher.public_url}")
        if rules is not None and rules.needs_walk:
            sha = fetcher.fetch_relevant(ref, rules)
        else:
            sha = fetcher.fetch_ref(ref, depth=1)
    git.check_tree(sha, limits)
    # sha is 40 validated hex digits, so it cannot be read as an option (checkout does not
    # accept --end-of-options in git 2.39).
    git.checked("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha)
    # For tools in the build that ask git for the origin; credentials stay out (see top).
    git.checked("remote", "add", "--end-of-options", "origin", fetcher.public_url)
    if full_clone and _is_shallow(git):
        git.log("Fetching the whole history (fullGitClone)")
        if fetcher.fetch("--unshallow", ref=sha).returncode != 0:
            raise SourceError("could not fetch the whole history of the commit (fullGitClone)")
    if pull_request_id is not None and branch is None:
        branch = fetcher.head_branch(sha, pull_request_id)
        if branch is not None:
            git.log(f"Pull request {pull_request_id} is the head of branch '{branch}'")
    git.log(f"Checked out {sha}")
    rc, out = git.output("show", "-s", "--format=%ct", sha)
    when = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
    commit_time = int(when) if when.isdigit() else None
    return FetchedSource(sha=sha, branch=branch, path=dest, commit_time=commit_time)


@contextlib.contextmanager
def _remote_git(
    local: bool,
    *,
    on_line: LineSink,
    cancel: threading.Event,
    timeout_s: float,
    env: Mapping[str, str] | None,
) -> Iterator[_Git]:
    """git for commands that need no repository (``ls-remote``), with an empty HOME."""
    with tempfile.TemporaryDirectory(prefix="shipyard-git-home-") as home:
        yield _Git(
            None,
            log=lambda line: on_line(strip_userinfo(line)),
            cancel=cancel,
            timeout_s=timeout_s,
            env=env,
            home=Path(home),
            allow_file=local,
        )


def list_remote_head(
    url: str,
    branch: str,
    *,
    on_line: LineSink,
    cancel: threading.Event,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    allowed_local_roots: Sequence[Path] = (),
    pin: RemotePin | None = None,
) -> str:
    """The sha at the tip of ``branch`` on ``url`` (``git ls-remote``), without fetching;
    ``pin``: the addresses ``check_remote`` approved."""
    local = _validate(url, None, branch, None, allowed_local_roots)
    ref = f"refs/heads/{branch}"
    with _remote_git(local, on_line=on_line, cancel=cancel, timeout_s=timeout_s, env=env) as git:
        found = _Fetcher(git, url, pin=pin).remote_refs(ref)
    if ref not in found:
        raise SourceError(f"branch '{branch}' not found on remote")
    return found[ref]


def list_remote_refs(
    url: str,
    patterns: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    allowed_local_roots: Sequence[Path] = (),
    pin: RemotePin | None = None,
) -> dict[str, str]:
    """{ref: sha} of the refs of ``url`` matching ``patterns`` (``git ls-remote``'s globs),
    without fetching; the same URL checks, clean environment and local-root rule as a
    fetch. The caller applies the private-address policy (``remote_policy.check_remote``)
    and passes the addresses it approved as ``pin``."""
    local = _validate(url, None, None, None, allowed_local_roots)
    quiet = threading.Event()
    with _remote_git(local, on_line=lambda _l: None, cancel=quiet, timeout_s=timeout_s,
                     env=env) as git:  # fmt: skip
        return _Fetcher(git, url, pin=pin).ls_remote(*patterns)
