"""Build users: one unprivileged host user per project, created on first use.

Root inside a rootless build is this user outside (the user namespace maps 0 -> uid and
1..65535 -> the user's ``/etc/subuid`` range), so a build that escapes its container is just
an ordinary user with nothing of Shipyard's readable. Different projects never share a uid:
the user name is derived from the Shipyard instance and the project, and ``useradd`` (not
``--system``) gives each user its own subordinate id range from ``login.defs``.
"""

from __future__ import annotations

import hashlib
import pwd
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

USER_PREFIX = "sy"
_TIMEOUT_S = 30.0


class SandboxError(RuntimeError):
    """The sandbox could not be set up (a host tool failed); the message says what."""


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int


@dataclass(frozen=True)
class BuildUser:
    name: str
    uid: int
    gid: int
    subuid: IdRange
    subgid: IdRange


def user_name(instance_id: str, project_id: str) -> str:
    """``sy<instance>-<project hash>``: 20 characters, under useradd's 32."""
    digest = hashlib.sha256(f"{instance_id}\0{project_id}".encode()).hexdigest()[:12]
    return f"{USER_PREFIX}{instance_id[:6]}-{digest}"


def _read_range(path: Path, name: str, uid: int) -> IdRange | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(uid)):
            return IdRange(int(parts[1]), int(parts[2]))
    return None


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()}")


class BuildUsers:
    """Creates and finds the build users of one Shipyard instance (``instance_id``)."""

    def __init__(self, instance_id: str, *, etc: Path = Path("/etc")) -> None:
        self.instance_id = instance_id
        self._etc = etc
        self._lock = threading.Lock()
        self._known: dict[str, BuildUser] = {}

    @property
    def prefix(self) -> str:
        return f"{USER_PREFIX}{self.instance_id[:6]}-"

    def for_project(self, project_id: str) -> BuildUser:
        name = user_name(self.instance_id, project_id)
        with self._lock:
            if (known := self._known.get(name)) is not None:
                return known
            user = self._lookup(name) or self._create(name)
            self._known[name] = user
            return user

    def lookup(self, name: str) -> BuildUser | None:
        """An existing build user of this instance, or None (never creates one)."""
        if not name.startswith(self.prefix):
            return None
        try:
            return self._lookup(name)
        except SandboxError:
            return None

    def _lookup(self, name: str) -> BuildUser | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        subuid = _read_range(self._etc / "subuid", name, entry.pw_uid)
        subgid = _read_range(self._etc / "subgid", name, entry.pw_uid)
        if subuid is None or subgid is None or subuid.count < 65536 or subgid.count < 65536:
            raise SandboxError(
                f"build user {name} has no subordinate id range of 65536 in /etc/subuid "
                "and /etc/subgid (rootless builds need one)"
            )
        return BuildUser(name, entry.pw_uid, entry.pw_gid, subuid, subgid)

    def _create(self, name: str) -> BuildUser:
        # No home (Shipyard gives each build its own HOME), no login shell, no password;
        # useradd allocates the subordinate ranges (SUB_UID_COUNT in login.defs).
        _run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", "--user-group", "--comment",
              "Shipyard build user", name])  # fmt: skip
        user = self._lookup(name)
        if user is None:
            raise SandboxError(f"useradd did not create {name}")
        return user

    def all(self) -> list[str]:
        """Names of this instance's build users that exist on the host."""
        return sorted(e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(self.prefix))

    def remove(self, name: str) -> None:
        with self._lock:
            if name.startswith(self.prefix):
                _run(["userdel", name])
            self._known.pop(name, None)

    def remove_all(self) -> None:
        """Delete this instance's users (tests, ``shipyard sandbox remove``)."""
        with self._lock:
            for name in self.all():
                _run(["userdel", name])
            self._known.clear()
