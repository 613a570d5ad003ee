"""Per-build resource caps in cgroups, enforced by the kernel over buildah and every RUN step.

These machines run cgroup v1 (hybrid): Shipyard (root) makes one group per build in the
``memory``, ``pids`` and ``cpu`` hierarchies and starts the build's processes inside it (a
small shim writes its own pid to ``cgroup.procs`` before it execs). Rootless runc cannot
create cgroups of its own on v1, so the RUN containers stay in the build's group: the caps
cover the whole build. At the end every process left in the group is killed (the freezer is
not needed: the group's processes cannot leave it, they have no write access to it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
KILL_SWEEP_S = 5.0


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids: int
    cpu_shares: int  # relative weight against other builds and the API (default 1024)
    cpu_quota: float | None = None  # cores; None = no hard quota

    def describe(self) -> str:
        quota = f", {self.cpu_quota:g} CPUs" if self.cpu_quota else ""
        return f"memory {self.memory_bytes // (1024 * 1024)} MiB, {self.pids} pids{quota}"


class BuildCgroup:
    """``<root>/<controller>/shipyard/<instance>/<name>`` for each controller."""

    def __init__(self, instance_id: str, name: str, *, root: Path = CGROUP_ROOT) -> None:
        self.paths = {c: root / c / "shipyard" / instance_id / name for c in CONTROLLERS}

    @classmethod
    def instance_groups(cls, instance_id: str, *, root: Path = CGROUP_ROOT) -> list[str]:
        base = root / "memory" / "shipyard" / instance_id
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def create(self, limits: Limits) -> None:
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)
        memory = self.paths["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        # Swap counts too where the kernel accounts it; otherwise the cap leaks into swap.
        with contextlib.suppress(OSError):
            (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        (self.paths["pids"] / "pids.max").write_text(str(limits.pids))
        cpu = self.paths["cpu"]
        (cpu / "cpu.shares").write_text(str(limits.cpu_shares))
        if limits.cpu_quota:
            period = 100_000
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(int(limits.cpu_quota * period)))

    def procs_files(self) -> list[str]:
        """Files a launcher writes its pid into (see ``launcher.join_cgroups_argv``)."""
        return [str(path / "cgroup.procs") for path in self.paths.values()]

    def usage(self) -> tuple[int, int]:
        """(memory in use, bytes; CPU time used so far, ns) of the whole build."""
        try:
            memory = int((self.paths["memory"] / "memory.usage_in_bytes").read_text())
            cpu = int((self.paths["cpuacct"] / "cpuacct.usage").read_text())
        except (OSError, ValueError):
            return 0, 0
        return memory, cpu

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(found)

    def oom_killed(self) -> bool:
        """The kernel killed a process of the build for the memory cap."""
        memory = self.paths["memory"]
        try:
            control = (memory / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in control.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value or 0) > 0:
                return True
        with contextlib.suppress(OSError, ValueError):
            return int((memory / "memory.failcnt").read_text()) > 0 and _hit_limit(memory)
        return False

    def pids_exhausted(self) -> bool:
        try:
            events = (self.paths["pids"] / "pids.events").read_text()
        except OSError:
            return False
        return any(
            line.startswith("max ") and int(line.split()[1]) > 0 for line in events.splitlines()
        )

    def kill_all(self) -> None:
        deadline = time.monotonic() + KILL_SWEEP_S
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def destroy(self) -> None:
        self.kill_all()
        for path in self.paths.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.05)


def _hit_limit(memory: Path) -> bool:
    limit = int((memory / "memory.limit_in_bytes").read_text())
    peak = int((memory / "memory.max_usage_in_bytes").read_text())
    return peak >= limit - 4096 * 16
