"""How a sandboxed command starts: join the build's cgroups (as root), enter its network
namespace (as root), drop to the build user, exec. One argv list, no shell string built from
data: the shim's script is a constant and everything else is passed as its arguments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Writes its own pid into each cgroup.procs file given before "--", then execs the rest.
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'


@dataclass(frozen=True)
class Launcher:
    uid: int
    gid: int
    netns: str | None = None  # None: the host's network namespace
    cgroup_procs: tuple[str, ...] = ()

    def wrap(self, argv: Sequence[str]) -> list[str]:
        wrapped = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                   "--", *argv]  # fmt: skip
        return self._enter(wrapped)

    def wrap_root(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as root (Shipyard's own steps, e.g. git), but inside the build's network
        namespace and cgroups: the network policy applies, and killing the build's cgroup
        (at the end, or after a crash at the next start) also ends these processes."""
        return self._enter(list(argv))

    def _enter(self, argv: list[str]) -> list[str]:
        wrapped = argv
        if self.netns is not None:
            # nsenter, not ``ip netns exec``: that one remounts /sys, and rootless runc then
            # finds no cgroup mount and refuses to create the RUN container.
            wrapped = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *wrapped]
        if self.cgroup_procs:
            wrapped = ["/bin/sh", "-c", _JOIN, "shipyard-join", *self.cgroup_procs, "--",
                       *wrapped]  # fmt: skip
        return wrapped
