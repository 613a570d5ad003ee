"""A persistent bare mirror per (project, repository): builds, the "most recent relevant
commit" walk, webhook diffs and the branches / pull-requests endpoints read it, and only
objects it lacks are fetched (DESIGN.md, git row: the next speed-up).

- **Per project.** ``<data dir>/mirrors/<project id>/<digest of the URL>.git``: a build only
  ever opens mirrors under its own project's directory, so one project's build never reads
  another project's objects (even of the same repository).
- **No URL in its config.** The URL (credentials included) is passed to each ``git fetch``
  and never written: the mirror holds refs and objects only. ``--no-write-fetch-head`` keeps
  even the credential-free URL out.
- **flock-guarded.** One process at a time fetches into or checks out of a mirror
  (``<mirror>.lock``); other builds of the same repository wait for it.
- **Incremental.** A ref new to the mirror is fetched shallow (depth 1, or the walk's first
  depth); a ref it already holds is fetched without depth, so the server sends only commits
  after the mirror's tip. A commit the mirror already has is not fetched at all.
- **Pruned.** The branches endpoint fetches every branch with ``--prune`` (deleted branches
  go); ``git gc --auto`` after fetches repacks and drops unreachable objects after git's
  expiry.
- **Checkout** into the build's work dir through ``objects/info/alternates`` (no object is
  copied); with ``includeGitFolder`` / ``fullGitClone`` the checkout's ``.git`` is made
  self-contained (``repack -a``) and the alternates link removed, so the image never points
  into the mirror.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from shipyard.builds.refs import is_valid_sha
from shipyard.builds.relevant_commit import PathRules
from shipyard.pipeline.errors import Cancelled, SourceError, TimedOut
from shipyard.pipeline.process import Completed, LineSink
from shipyard.pipeline.remote_policy import RemotePin
from shipyard.pipeline.source_git import (
    SHA_SEARCH_DEPTHS,
    CheckoutLimits,
    FetchedSource,
    _detail,
    _Fetcher,
    _Git,
    _pick_ref,
    _Ref,
    _validate,
    strip_userinfo,
)

# Where a fetched-by-id commit is kept: a ref, so the next fetch offers it as a "have" (the
# server then sends only what is new). One ref, moved by each such fetch.
FETCHED_REF = "refs/shipyard/fetched"
# The remote's default branch (``HEAD`` cannot be a destination in a bare repository).
DEFAULT_BRANCH_REF = "refs/shipyard/remote-head"
ZERO_SHA = "0" * 40
_LOCK_POLL_S = 0.05


# Half of ``gc.autoPackLimit`` (50) and of ``gc.auto`` (6 700) / 256 (git counts the
# loose objects in ``objects/17`` and multiplies by 256).
GC_PACKS_CHECK = 25
GC_LOOSE_17_CHECK = 14


def normalise_url(url: str) -> str:
    """The repository a URL names, for comparing URLs: no credentials, no scheme, no
    ``.git`` suffix or trailing slash, lower-case host; scp-like ``git@host:a/b`` equals
    ``ssh://git@host/a/b`` and ``https://host/a/b``."""
    text = strip_userinfo(url.strip())
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() == "file":
            return "file:" + rest.rstrip("/").removesuffix(".git")
        rest = rest.split("@", 1)[-1]
        host, _, path = rest.partition("/")
    elif text.startswith("/"):
        return "file:" + text.rstrip("/").removesuffix(".git")
    else:
        rest = text.split("@", 1)[-1]
        host, _, path = rest.partition(":")
    host = host.lower()
    # A default port names the same repository.
    for default in (":443", ":80", ":22"):
        host = host.removesuffix(default)
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}"


@dataclass(frozen=True)
class MirrorStore:
    """The root of every mirror (root-only, in Shipyard's data dir)."""

    root: Path

    def path(self, project_id: str, url: str) -> Path:
        key = hashlib.sha256(normalise_url(url).encode()).hexdigest()[:32]
        if not project_id or "/" in project_id or project_id.startswith("."):
            raise SourceError(f"invalid project id {project_id!r}")
        return self.root / project_id / f"{key}.git"

    def remove_project(self, project_id: str) -> None:
        shutil.rmtree(self.root / project_id, ignore_errors=True)


@contextlib.contextmanager
def locked(
    mirror: Path, *, cancel: threading.Event | None = None, timeout_s: float = 600.0
) -> Iterator[None]:
    """Hold ``<mirror>.lock`` (flock, exclusive). Waits while another build uses the mirror;
    gives up on ``cancel`` or after ``timeout_s``."""
    mirror.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(mirror.parent / f"{mirror.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel is not None and cancel.is_set():
                    raise Cancelled() from None
                if time.monotonic() > deadline:
                    raise TimedOut("waiting for the repository mirror timed out") from None
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _local_name(remote_ref: str) -> str:
    return remote_ref if remote_ref.startswith("refs/") else DEFAULT_BRANCH_REF


class MirrorFetcher(_Fetcher):
    """``_Fetcher`` whose fetches land in refs of the bare mirror (``git`` runs in it)."""

    def __init__(
        self,
        git: _Git,
        url: str,
        mirror: Path,
        remote: _Git | None = None,
        pin: RemotePin | None = None,
    ) -> None:
        super().__init__(git, url, remote, pin)
        self.git_dir = mirror
        self.mirror = mirror

    def ensure_initialised(self) -> None:
        if (self.mirror / "HEAD").is_file() and (self.mirror / "objects").is_dir():
            return
        shutil.rmtree(self.mirror, ignore_errors=True)
        self.mirror.mkdir(parents=True, mode=0o700)
        self.git.checked("init", "-q", "--bare", ".")
        # Fetches go to refs named below; none of git's own maintenance runs during a build.
        self.git.checked("config", "gc.autoDetach", "false")

    def has_ref(self, name: str) -> bool:
        rc, _ = self.git.output("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        return rc == 0

    def fetch_into(self, *options: str, refspecs: Sequence[str]) -> Completed:
        return self.remote.run(
            "fetch", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head", *options,
            "--end-of-options", self.url, *refspecs,
        )  # fmt: skip

    def fetch_ref(self, ref: _Ref, *, depth: int) -> str:
        """Bring the mirror's copy of ``ref`` up to date: shallow (``depth``) if the mirror
        never had it, else only what is new since its tip. Returns the tip."""
        local = _local_name(ref.name)
        options: tuple[str, ...] = () if self.has_ref(local) else ("--depth", str(depth))
        completed = self.fetch_into(*options, refspecs=[f"+{ref.name}:{local}"])
        if completed.returncode != 0:
            raise self.fail(ref, completed)
        return self.git.rev_parse(local)

    def _deepen(self, ref: _Ref, by: int) -> None:
        self.git.log(f"Fetching {by} more commits of {ref.label}")
        local = _local_name(ref.name)
        completed = self.fetch_into(f"--deepen={by}", refspecs=[f"+{ref.name}:{local}"])
        if completed.returncode != 0:
            raise self.fail(ref, completed)

    def fetch_sha(self, sha: str, find_ref: Callable[[], _Ref | None]) -> None:
        if self.git.has_commit(sha):
            self.git.log(f"Commit {sha} is already in the repository mirror")
            return
        self.git.log(f"Fetching commit {sha} from {self.public_url} into the mirror")
        completed = self.fetch_into("--depth", "1", refspecs=[f"+{sha}:{FETCHED_REF}"])
        if completed.returncode == 0 and self.git.has_commit(sha):
            return
        ref = find_ref()
        if ref is None:
            self.git.log(f"The server did not send {sha[:12]} by id; fetching all branches")
            done = self.fetch_into(refspecs=["+refs/heads/*:refs/heads/*"])
            if done.returncode != 0:
                raise SourceError(f"could not fetch from {self.public_url}: {_detail(done.tail)}")
        else:
            self.git.log(f"The server did not send {sha[:12]} by id; searching {ref.label}")
            fetched = 0
            for depth in SHA_SEARCH_DEPTHS:
                if fetched == 0:
                    self.fetch_ref(ref, depth=depth)
                else:
                    self._deepen(ref, depth - fetched)
                fetched = depth
                if self.git.has_commit(sha):
                    return
            local = _local_name(ref.name)
            self.fetch_into("--unshallow", refspecs=[f"+{ref.name}:{local}"])
        if not self.git.has_commit(sha):
            raise SourceError(f"commit {sha} not found on remote")

    def pick_pull_request(self, number: int) -> _Ref:
        """GitHub's ``refs/pull/N/head`` or GitLab's ``refs/merge-requests/N/head``: the one
        the mirror has, else the one the server sends (tried in that order)."""
        github = f"refs/pull/{number}/head"
        gitlab = f"refs/merge-requests/{number}/head"
        missing = f"pull request {number} not found on remote (tried {github} and {gitlab})"
        for name in (github, gitlab):
            if self.has_ref(name):
                return _Ref(name, f"pull request {number}", missing)
        return _pick_ref(self, None, number)

    def gc(self) -> None:
        """Repack and prune when git thinks it is due. ``git gc --auto`` is asked only when
        the mirror is at least half way to git's default thresholds (50 packs; 6 700 loose
        objects, estimated as git does from ``objects/17``): a directory listing instead of a
        git process on every build's path."""
        objects = self.mirror / "objects"
        try:
            packs = sum(1 for p in (objects / "pack").iterdir() if p.suffix == ".pack")
        except OSError:
            packs = 0
        try:
            loose = sum(1 for _ in (objects / "17").iterdir())
        except OSError:
            loose = 0
        if packs < GC_PACKS_CHECK and loose < GC_LOOSE_17_CHECK:
            return
        self.git.run("gc", "--auto", "--quiet", sink=lambda _line: None)

    def update_all(self) -> dict[str, str]:
        """Fetch every branch and pull request head (``--prune``: deleted ones go); returns
        {ref: sha} of the mirror's branch and PR refs.

        Tips only (``--depth 1``): a repository with thousands of PR refs must not be cloned
        whole by a listing, and a new branch fetched without depth brings all of its history
        the mirror lacks. Objects the mirror has are still not sent (its refs are "haves");
        a walk or merge base that needs more history deepens the ref it reads."""
        refspecs = [
            "+refs/heads/*:refs/heads/*",
            "+refs/pull/*/head:refs/pull/*/head",
            "+refs/merge-requests/*/head:refs/merge-requests/*/head",
        ]
        completed = self.fetch_into("--prune", "--depth", "1", refspecs=refspecs)
        if completed.returncode != 0:
            raise SourceError(
                f"could not read from repository {self.public_url}: {_detail(completed.tail)}"
            )
        return self.local_refs("refs/heads/", "refs/pull/", "refs/merge-requests/")

    def has_any_ref(self) -> bool:
        rc, out = self.git.output("for-each-ref", "--count=1", "--format=%(refname)")
        return rc == 0 and bool(out.strip())

    def local_refs(self, *prefixes: str) -> dict[str, str]:
        rc, out = self.git.output("for-each-ref", "--format=%(objectname) %(refname)", *prefixes)
        if rc != 0:
            raise SourceError(f"git for-each-ref failed: {_detail(out.splitlines()[-5:])}")
        found: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            if name and is_valid_sha(sha):
                found[name] = sha
        return found


def mirror_git(
    mirror: Path,
    *,
    on_line: LineSink,
    cancel: threading.Event,
    timeout_s: float,
    env: Mapping[str, str] | None,
    home: Path,
    local: bool,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> _Git:
    return _Git(
        mirror,
        log=lambda line: on_line(strip_userinfo(line)),
        cancel=cancel,
        timeout_s=timeout_s,
        env=env,
        home=home,
        allow_file=local,
        wrap=wrap,
    )


def fetch_via_mirror(
    url: str,
    dest: Path,
    mirror: Path,
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
    include_git_folder: bool = False,
    pin: RemotePin | None = None,
) -> FetchedSource:
    """``fetch_source``'s contract, through the mirror at ``mirror`` (created if missing):
    the commit is brought into the mirror (nothing fetched if it is there), then checked
    out into ``dest``."""
    local = _validate(url, sha, branch, pull_request_id, allowed_local_roots)
    dest.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryDirectory(prefix=".git-home-", dir=dest.parent) as home:
        with locked(mirror, cancel=cancel, timeout_s=timeout_s):
            make = partial(mirror_git, mirror, on_line=on_line, cancel=cancel,
                           timeout_s=timeout_s, env=env, home=Path(home), local=local)  # fmt: skip
            # Only what talks to the server runs in the build's network namespace (``wrap``);
            # queries of the mirror and the checkout are local (no namespace entry each).
            git, remote = make(), make(wrap=wrap)
            fetcher = MirrorFetcher(git, url, mirror, remote, pin)
            fetcher.ensure_initialised()
            sha = _resolve(fetcher, sha=sha, branch=branch, pull_request_id=pull_request_id,
                           rules=rules)  # fmt: skip
            if pull_request_id is not None and branch is None:
                branch = fetcher.head_branch(sha, pull_request_id)
                if branch is not None:
                    git.log(f"Pull request {pull_request_id} is the head of branch '{branch}'")
            left = max(1.0, deadline - time.monotonic())
            checkout = _Git(
                dest, log=git.log, cancel=cancel, timeout_s=left, env=env, home=Path(home),
                allow_file=local,
            )  # fmt: skip
            _checkout(checkout, fetcher, mirror, sha, limits=limits,
                      self_contained=include_git_folder or full_clone)  # fmt: skip
            # Committer time: the image's ``created`` and buildah's ``--timestamp``.
            rc, out = git.output("show", "-s", "--format=%ct", sha)
            fetcher.gc()
        if full_clone and (dest / ".git" / "shallow").exists():
            git.log("Fetching the whole history (fullGitClone)")
            network = _Git(dest, log=git.log, cancel=cancel, timeout_s=left, env=env,
                           home=Path(home), allow_file=local, wrap=wrap)  # fmt: skip
            network.use(fetcher.access)
            done = network.run("fetch", "--no-tags", "--unshallow", "--end-of-options",
                               fetcher.url, sha)  # fmt: skip
            if done.returncode != 0:
                raise SourceError("could not fetch the whole history of the commit (fullGitClone)")
    git.log(f"Checked out {sha}")
    when = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
    commit_time = int(when) if when.isdigit() else None
    return FetchedSource(sha=sha, branch=branch, path=dest, commit_time=commit_time)


def _resolve(
    fetcher: MirrorFetcher,
    *,
    sha: str | None,
    branch: str | None,
    pull_request_id: int | None,
    rules: PathRules | None,
) -> str:
    if sha is not None:

        def find_ref() -> _Ref | None:
            if pull_request_id is not None:
                return fetcher.pick_pull_request(pull_request_id)
            if branch is not None:
                return _pick_ref(fetcher, branch, None)
            return None

        fetcher.fetch_sha(sha, find_ref)
        return sha
    if pull_request_id is not None:
        ref = fetcher.pick_pull_request(pull_request_id)
    else:
        ref = _pick_ref(fetcher, branch, None)
    fetcher.git.log(f"Fetching {ref.label} from {fetcher.public_url} into the mirror")
    if rules is not None and rules.needs_walk:
        return fetcher.fetch_relevant(ref, rules)
    return fetcher.fetch_ref(ref, depth=1)


def _checkout(
    git: _Git,
    fetcher: MirrorFetcher,
    mirror: Path,
    sha: str,
    *,
    limits: CheckoutLimits,
    self_contained: bool,
) -> None:
    git.checked("init", "-q", ".")
    assert git.cwd is not None
    git_dir = git.cwd / ".git"
    alternates = git_dir / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(f"{mirror / 'objects'}\n")
    shallow = mirror / "shallow"
    if shallow.exists():
        shutil.copyfile(shallow, git_dir / "shallow")
    git.check_tree(sha, limits)
    git.checked("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha)
    # For tools in the build that ask git for the origin; credentials stay out.
    git.checked("remote", "add", "--end-of-options", "origin", fetcher.public_url)
    if self_contained:
        # The image must not depend on (or point at) the mirror: copy what HEAD reaches.
        git.checked("repack", "-a", "-d", "-q")
        alternates.unlink()


def read_refs_via_mirror(
    url: str,
    mirror: Path,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    allowed_local_roots: Sequence[Path] = (),
    pin: RemotePin | None = None,
) -> dict[str, str]:
    """The remote's branch and PR heads, brought into the mirror (only new objects come;
    deleted refs are pruned) and read from it. ``pin``: the addresses ``check_remote``
    approved."""
    local = _validate(url, None, None, None, allowed_local_roots)
    quiet = threading.Event()
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-git-home-") as home,
        locked(mirror, timeout_s=timeout_s),
    ):
        git = mirror_git(mirror, on_line=lambda _l: None, cancel=quiet, timeout_s=timeout_s,
                             env=env, home=Path(home), local=local)  # fmt: skip
        fetcher = MirrorFetcher(git, url, mirror, pin=pin)
        fetcher.ensure_initialised()
        return fetcher.update_all()


@dataclass(frozen=True)
class PushDiff:
    """What a push changed, read from the mirror."""

    paths: tuple[str, ...] | None  # None: unknown (every path counts as changed)
    head_message: str
    basis: str  # how the diff was taken, for the delivery record


def push_diff(
    url: str,
    mirror: Path,
    *,
    before: str,
    after: str,
    ref: str,
    base_branch: str | None,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    allowed_local_roots: Sequence[Path] = (),
    pin: RemotePin | None = None,
) -> PushDiff:
    """The net diff of a push (``before..after``: all its commits, as one tree comparison)
    and the head commit's message, both from the mirror (``after`` and ``before`` fetched by
    id, or with ``ref``, if it lacks them).

    - ``before`` all zeros (a new branch or PR ref): the diff from the merge base with
      ``base_branch`` (fetched too) when there is one; else unknown.
    - ``before`` that cannot be fetched (a force-push whose old tip the server dropped):
      unknown. A force-push whose old tip is still there is diffed like any push (the net
      change of the tree, whatever the history).
    """
    local = _validate(url, after, None, None, allowed_local_roots)
    quiet = threading.Event()
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-git-home-") as home,
        locked(mirror, timeout_s=timeout_s),
    ):
        git = mirror_git(mirror, on_line=lambda _l: None, cancel=quiet, timeout_s=timeout_s,
                             env=env, home=Path(home), local=local)  # fmt: skip
        fetcher = MirrorFetcher(git, url, mirror, pin=pin)
        fetcher.ensure_initialised()
        target = _Ref(ref, ref, f"{ref} not found on remote")
        if not git.has_commit(after):
            fetcher.fetch_ref(target, depth=1)
            if not git.has_commit(after):
                fetcher.fetch_sha(after, lambda: None)
        message = _message(git, after)
        base: str | None = None
        basis = f"{before[:12]}..{after[:12]}"
        if before == ZERO_SHA:
            base = _merge_base(fetcher, after, target, base_branch)
            basis = (f"new ref: merge base {base[:12]} with '{base_branch}'" if base
                         else "new ref without a merge base: every path counts")  # fmt: skip
        elif is_valid_sha(before):
            if not git.has_commit(before):
                fetcher.fetch_into("--depth", "1", refspecs=[f"+{before}:{FETCHED_REF}"])
            base = before if git.has_commit(before) else None
            if base is None:
                basis = f"old tip {before[:12]} is gone (force-push): every path counts"
        if base is None:
            return PushDiff(None, message, basis)
        rc, out = git.output("diff", "--name-only", "--no-renames", "-z", base, after, "--")
        if rc != 0:
            return PushDiff(None, message, f"diff failed: every path counts ({basis})")
        paths = tuple(p for p in out.replace("\n", "\0").split("\0") if p)
        return PushDiff(paths, message, basis)


def _message(git: _Git, sha: str) -> str:
    lines: list[str] = []
    completed = git.run("log", "-1", "--format=%B", sha, "--", sink=lines.append)
    return "\n".join(lines) if completed.returncode == 0 else ""


def _merge_base(
    fetcher: MirrorFetcher, after: str, pushed: _Ref, base_branch: str | None
) -> str | None:
    """The merge base of ``after`` (the tip of ``pushed``) with ``base_branch``, deepening
    both in the mirror (shallow tips hide their parents) until one is found or the depths
    run out."""
    if not base_branch:
        return None
    ref = _Ref(f"refs/heads/{base_branch}", f"branch '{base_branch}'", "missing")
    try:
        tip = fetcher.fetch_ref(ref, depth=50)
    except SourceError:
        return None
    for deepen in (0, 50, 200, 1000):
        if deepen:
            try:
                fetcher._deepen(ref, deepen)
                fetcher._deepen(pushed, deepen)
            except SourceError:
                return None
        rc, out = fetcher.git.output("merge-base", tip, after)
        if rc == 0 and is_valid_sha(out.strip()):
            return out.strip()
    return None
