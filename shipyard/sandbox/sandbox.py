"""One build's sandbox, start to end, and the instance-wide parts it needs.

``Sandbox.for_build`` gives a ``BuildSandbox``: the project's build user and store, a work
dir that Shipyard fills as root and then hands to the user, the build's cgroups and network
namespace, and a ``Buildah`` that runs everything through them. Leaving it kills whatever
the build left running (the cgroup), removes the namespace and the work dir with the
decrypted secrets in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from shipyard.pipeline.builder import (
    Buildah,
    BuildahStore,
    remove_unborn_runc_state,
    unmount_under,
)
from shipyard.pipeline.errors import PipelineError
from shipyard.sandbox import network
from shipyard.sandbox.cgroups import BuildCgroup, Limits
from shipyard.sandbox.launcher import Launcher
from shipyard.sandbox.layout import SandboxLayout, UserDirs, chown_tree
from shipyard.sandbox.network import BuildNetwork, Loopback, NetworkMode
from shipyard.sandbox.users import BuildUser, BuildUsers, SandboxError, user_name

log = logging.getLogger(__name__)

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Less than this free on a project's filesystem counts as full (ext4 keeps no root reserve
# for the build user's writes that matter here).
DISK_FULL_BYTES = 1 << 20
_BASE_TIMEOUT_S = 300.0


class Background:
    """Runs ``fn`` in a thread now; ``result()`` waits and re-raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the caller in result()
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self.wait()
        if self._error is not None:
            raise self._error


def user_env(user: BuildUser, dirs: UserDirs) -> dict[str, str]:
    """The whole environment of a build user's buildah (nothing of Shipyard's own)."""
    return {
        "PATH": _PATH,
        "HOME": str(dirs.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "XDG_RUNTIME_DIR": str(dirs.runtime_dir),
        "TMPDIR": str(dirs.runtime_dir),
        "LANG": "C.UTF-8",
    }


@dataclass(frozen=True)
class SandboxSettings:
    root: Path
    instance_id: str
    network: NetworkMode
    limits: Limits
    loopback_ports: tuple[int, ...] = ()  # registry and token endpoint
    # Registry and token endpoint elsewhere (sandbox/endpoints.py): this host's own
    # non-loopback addresses standing for loopback ports, and other machines' address:port.
    local_endpoints: tuple[tuple[str, int], ...] = ()
    remote_endpoints: tuple[tuple[str, int], ...] = ()
    allowed_networks: tuple[str, ...] = ()
    base_store: BuildahStore | None = None  # images every project may build FROM
    use_cgroups: bool = True
    disk_bytes: int | None = None  # per project (store + work dirs); None = no cap


class BaseImageError(PipelineError):
    pass


@dataclass(frozen=True)
class SandboxRequest:
    """What a service asks for (its ``buildSandbox``): it can only narrow the operator's."""

    network: NetworkMode | None = None
    memory_mb: int | None = None
    pids: int | None = None
    cpus: float | None = None

    @classmethod
    def from_spec(cls, spec: object) -> SandboxRequest | None:
        if not isinstance(spec, dict):
            return None
        network = spec.get("network")
        return cls(
            network=NetworkMode(network) if network in ("isolated", "none", "host") else None,
            memory_mb=_int_or_none(spec.get("memoryMb")),
            pids=_int_or_none(spec.get("pids")),
            cpus=float(spec["cpus"]) if isinstance(spec.get("cpus"), int | float) else None,
        )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def effective(
    settings: SandboxSettings, request: SandboxRequest | None
) -> tuple[NetworkMode, Limits, list[str]]:
    """The operator's network and limits, narrowed by ``request``; notes on what was clamped."""
    network, limits = settings.network, settings.limits
    notes: list[str] = []
    if request is None:
        return network, limits, notes
    if request.network is not None:
        network = settings.network.narrowest(request.network)
        if network is not request.network:
            notes.append(f"network {request.network} is wider than the operator allows")
    memory = limits.memory_bytes
    if request.memory_mb is not None:
        memory = min(memory, request.memory_mb * 1024 * 1024)
    pids = min(limits.pids, request.pids) if request.pids is not None else limits.pids
    quota = limits.cpu_quota
    if request.cpus is not None:
        quota = min(quota, request.cpus) if quota is not None else request.cpus
    return network, Limits(memory, pids, limits.cpu_shares, quota), notes


@dataclass
class BuildSandbox:
    sandbox: Sandbox
    project_id: str
    key: str
    user: BuildUser
    dirs: UserDirs
    workdir: Path
    cgroup: BuildCgroup | None
    net: BuildNetwork | None
    network_mode: NetworkMode
    limits: Limits
    notes: list[str]
    launcher: Launcher = field(init=False)
    disk_full: bool = False  # a step reported ENOSPC (see ``watch``)
    # The build did not end cleanly (failed, aborted, timed out): buildah may have left
    # working containers and mounts that only a sweep of the idle store removes.
    dirty: bool = False
    _tasks: list[Background] = field(default_factory=list)
    samples: dict[str, list[tuple[str, float]]] = field(
        default_factory=lambda: {"cpu": [], "memory": []}
    )
    _stop_sampling: threading.Event = field(default_factory=threading.Event)

    def start_sampling(self, interval_s: float = 2.0) -> None:
        """CPU (vCPU) and memory (MB) of the whole build every ``interval_s``, for
        ``GET …/build-metrics``."""
        if self.cgroup is None:
            return
        cgroup = self.cgroup

        def sample() -> None:
            last_cpu, last_t = cgroup.usage()[1], time.monotonic()
            while not self._stop_sampling.wait(interval_s):
                self.check_disk()
                memory, cpu = cgroup.usage()
                now = time.monotonic()
                ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                vcpu = (cpu - last_cpu) / 1e9 / max(now - last_t, 1e-3)
                self.samples["cpu"].append((ts, round(max(vcpu, 0.0), 3)))
                self.samples["memory"].append((ts, round(memory / (1 << 20), 1)))
                last_cpu, last_t = cpu, now

        threading.Thread(target=sample, name=f"metrics-{self.key}", daemon=True).start()

    def __post_init__(self) -> None:
        self.launcher = Launcher(
            uid=self.user.uid,
            gid=self.user.gid,
            netns=self.net.name if self.net is not None else None,
            cgroup_procs=tuple(self.cgroup.procs_files()) if self.cgroup else (),
        )

    @property
    def store(self) -> BuildahStore:
        return BuildahStore(root=self.dirs.store / "root", runroot=self.dirs.store / "runroot")

    @property
    def env(self) -> dict[str, str]:
        return user_env(self.user, self.dirs)

    @property
    def run_network(self) -> str:
        """buildah's ``--network`` for RUN steps: the namespace buildah itself is in."""
        return "none" if self.network_mode is NetworkMode.NONE else "host"

    def buildah(self, *, pull_tls_verify: bool, stall_timeout_s: float | None = None) -> Buildah:
        # Never "exclusive": another build of the project may start while this one runs, so
        # its janitor must not sweep the store. Working containers a stopped build left are
        # swept once the project's store is idle (``Sandbox._leave``).
        return Buildah(
            self.store,
            pull_tls_verify=pull_tls_verify,
            exclusive_store=False,
            launcher=self.launcher,
            env=self.env,
            runc_root=self.dirs.runc_root,
            stall_timeout_s=stall_timeout_s,
        )

    def enter_network(self, argv: list[str]) -> list[str]:
        """``argv`` run by Shipyard (root) inside the build's network namespace: git fetches
        then obey the build's network policy, enforced by the kernel. They also run in the
        build's cgroups: a git left by a killed server is killed with them at the next start."""
        return self.launcher.wrap_root(argv)

    def hand_over(self) -> None:
        """Shipyard has written source, build files and secrets: the build user owns them now
        (0700 dirs under a root 0711 parent: no other build user can read them)."""
        chown_tree(self.workdir, self.user)

    def describe(self) -> str:
        """For the build log: what this build runs with."""
        text = (
            f"Sandbox: user {self.user.name}, network {self.network_mode}, {self.limits.describe()}"
        )
        if disk := self.sandbox.settings.disk_bytes:
            text += f", disk {disk / (1 << 30):g} GiB per project"
        return text + "".join(f" ({note})" for note in self.notes)

    def watch(self, line: str) -> None:
        """Sees every output line: ENOSPC anywhere in the build (a RUN step, buildah's commit)
        is named as such, whatever error buildah ends with ("read/write on closed pipe")."""
        lowered = line.lower()
        if "no space left on device" in lowered or "disk quota exceeded" in lowered:
            self.disk_full = True

    def check_disk(self) -> None:
        """Sampled while the build runs: a full project filesystem is remembered even if
        buildah frees its temporary files before it reports the failure."""
        try:
            stat = os.statvfs(self.dirs.root)
        except OSError:
            return
        if stat.f_bavail * stat.f_frsize < DISK_FULL_BYTES:
            self.disk_full = True

    def limit_message(self, stage: str = "building") -> str | None:
        """Which cap the build hit, if any (for the build's message); ``stage``: what it was
        doing (e.g. "building")."""
        limits = self.limits
        if self.cgroup is not None and self.cgroup.oom_killed():
            mib = limits.memory_bytes // (1024 * 1024)
            return f"the build ran out of memory: its limit is {mib} MiB (SHIPYARD_BUILD_MEMORY_MB)"
        self.check_disk()
        if self.disk_full:
            if disk := self.sandbox.settings.disk_bytes:
                return (
                    f"no space left on device while {stage}: each project's disk (layers "
                    f"and work dirs) holds {disk / (1 << 30):g} GiB (SHIPYARD_BUILD_DISK_GB)"
                )
            return f"no space left on device while {stage}"
        if self.cgroup is None:
            return None
        if self.cgroup.pids_exhausted():
            return (f"the build hit its process limit of {limits.pids} "
                    "(SHIPYARD_BUILD_PIDS)")  # fmt: skip
        return None

    def import_base_images(self) -> None:
        self.sandbox.base_images.ensure_for(self.user, self.dirs)

    def start_base_import(self) -> Background:
        """The import in a thread (it overlaps the source fetch); ``close`` waits for it."""
        task = Background(self.import_base_images)
        self._tasks.append(task)
        return task

    def close(self) -> None:
        self._stop_sampling.set()
        for task in self._tasks:
            task.wait()
        if self.cgroup is not None:
            self.cgroup.destroy()  # kills every process of the build first
        if self.net is not None:
            # Nothing of the build runs any more (its cgroup is empty): the namespace and
            # its rules go in the background, off the build's path (``Sandbox.stop`` waits).
            self.sandbox.discard_network(self.net)
        _runc_state_cleanup(self.dirs.runc_root, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.layout = SandboxLayout(settings.root)
        self.users = BuildUsers(settings.instance_id)
        self.base_images = BaseImages(self)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._active: Counter[str] = Counter()
        self._dirty: set[str] = set()  # stores to sweep once their project is idle
        self._sweeping: set[str] = set()  # no build of these projects starts meanwhile
        # A network namespace made ahead for the next build (``_network``).
        self._spare: BuildNetwork | None = None
        self._filling = False
        self._stopped = False
        # Threads making a spare or removing a finished build's network: ``stop`` waits.
        self._discarding: set[threading.Thread] = set()

    def start(self) -> None:
        self.layout.create()
        # A build user may plant links and hard links in world-writable directories (/tmp);
        # the kernel's protections stop root (Shipyard) from following them there.
        for name in ("protected_symlinks", "protected_hardlinks"):
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/fs/{name}").write_text("1\n")
        if self.settings.network is not NetworkMode.HOST:
            network.install_host_rules()

    def _user_dirs(self, project_id: str) -> tuple[BuildUser, UserDirs]:
        user = self.users.for_project(project_id)
        disk = None
        if self.settings.disk_bytes:
            disk = self.layout.disk(user, self.settings.disk_bytes)
        with self._lock:  # two builds of one project must not both mount its disk
            return user, self.layout.user(user).create(user, disk)

    def prepare(self, project_id: str) -> None:
        """Everything a project's first build would otherwise wait for: its user, disk,
        store and shared base images."""
        user, dirs = self._user_dirs(project_id)
        self.base_images.ensure_for(user, dirs)

    @contextlib.contextmanager
    def for_build(
        self, project_id: str, key: str, request: SandboxRequest | None = None
    ) -> Iterator[BuildSandbox]:
        network_mode, limits, notes = effective(self.settings, request)
        user, dirs = self._user_dirs(project_id)
        net = self._network() if network_mode is not NetworkMode.HOST else None
        try:
            workdir = dirs.work / key
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(mode=0o700)
            cgroup = None
            if self.settings.use_cgroups:
                cgroup = BuildCgroup(self.settings.instance_id, key)
                cgroup.create(limits)
        except BaseException:
            if net is not None:
                net.destroy()
            raise
        box = BuildSandbox(
            self, project_id, key, user, dirs, workdir, cgroup, net, network_mode, limits, notes
        )
        with self._changed:
            while user.name in self._sweeping:
                self._changed.wait()
            self._active[user.name] += 1
        try:
            yield box
        except BaseException:
            box.dirty = True
            raise
        finally:
            try:
                box.close()
            finally:
                self._leave(box)

    def _network(self) -> BuildNetwork:
        """A build's network namespace, ready: the spare made in the background while the
        previous build ran (when it still exists and has today's resolvers), else a new one.
        Then the next spare is made in the background: creating one costs 7 ``ip`` and
        ``iptables`` processes (40-130 ms here) that no longer sit on a build's path."""
        dns = tuple(network.nameservers())
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and (spare.dns != dns or not spare.exists()):
            spare.destroy()
            spare = None
        if spare is None:
            spare = self._new_network(dns)
            spare.create()
        self._refill()
        return spare

    def _new_network(self, dns: tuple[str, ...]) -> BuildNetwork:
        # Named by a token, not by the build: whichever build comes next takes it.
        return BuildNetwork(
            self.settings.instance_id,
            f"net-{secrets.token_hex(8)}",
            Loopback(self.settings.loopback_ports, self.settings.local_endpoints),
            allowed=self.settings.allowed_networks,
            dns=dns,
            remote=self.settings.remote_endpoints,
        )

    def _refill(self) -> None:
        def fill() -> None:
            made: BuildNetwork | None = None
            try:
                made = self._new_network(tuple(network.nameservers()))
                made.create()
            except Exception:  # the next build makes its own
                log.exception("making a spare build network failed")
                made = None
            with self._lock:
                self._filling = False
                if made is not None and self._spare is None and not self._stopped:
                    self._spare, made = made, None
            try:
                if made is not None:
                    made.destroy()
            finally:
                with self._lock:
                    self._discarding.discard(threading.current_thread())

        with self._lock:
            if self._spare is not None or self._filling or self._stopped:
                return
            self._filling = True
            thread = threading.Thread(target=fill, name="spare-network", daemon=True)
            self._discarding.add(thread)  # ``stop`` waits for it (it removes what it made)
        thread.start()

    def prepare_network(self) -> None:
        """Make the first spare network in the background (after ``clean_leftovers``, which
        would remove it): the first build after a start gets one ready too."""
        if self.settings.network is not NetworkMode.HOST:
            self._refill()

    def discard_network(self, net: BuildNetwork) -> None:
        """Remove a finished build's network in the background."""

        def destroy() -> None:
            try:
                net.destroy()
            except Exception:  # clean_leftovers at the next start removes what is left
                log.exception("removing build network %s failed", net.name)
            finally:
                with self._lock:
                    self._discarding.discard(thread)

        thread = threading.Thread(target=destroy, name="discard-network", daemon=True)
        with self._lock:
            self._discarding.add(thread)
        thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """No more builds: remove the spare network and wait for the removal of finished
        builds' networks (one still being made removes itself; after a kill,
        ``clean_leftovers`` at the next start removes them)."""
        with self._lock:
            self._stopped = True
            spare, self._spare = self._spare, None
            pending = list(self._discarding)
        if spare is not None:
            spare.destroy()
        deadline = time.monotonic() + timeout_s
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _leave(self, box: BuildSandbox) -> None:
        """The last build of a project to leave sweeps its store if any build of it ended
        uncleanly: an abort in buildah's first moments (before it handles SIGTERM) or a
        SIGKILL after the grace leaves working containers and overlay mounts, which carry
        nothing naming their build, so they can only be removed while no build uses the
        store. New builds of the project wait for the sweep (a fraction of a second)."""
        name = box.user.name
        with self._changed:
            self._active[name] -= 1
            if box.dirty:
                self._dirty.add(name)
            sweep = self._active[name] == 0 and name in self._dirty
            if sweep:
                self._dirty.discard(name)
                self._sweeping.add(name)
        if not sweep:
            return
        try:
            self.sweep_store(box.user, box.dirs)
        finally:
            with self._changed:
                self._sweeping.discard(name)
                self._changed.notify_all()

    def sweep_store(self, user: BuildUser, dirs: UserDirs) -> None:
        """Remove every working container of an idle project store (as its build user)."""
        buildah = Buildah(
            BuildahStore(root=dirs.store / "root", runroot=dirs.store / "runroot"),
            launcher=Launcher(uid=user.uid, gid=user.gid),
            env=user_env(user, dirs),
            runc_root=dirs.runc_root,
        )
        try:
            buildah.sweep_store()
        except Exception:  # the next unclean build's sweep tries again
            log.exception("sweeping the store of %s failed", user.name)

    def has_store(self, project_id: str) -> bool:
        """Whether the project has a build user (and so a store) on this machine."""
        return user_name(self.settings.instance_id, project_id) in self.users.all()

    @contextlib.contextmanager
    def exclusive(self, project_id: str, timeout_s: float = 60.0) -> Iterator[ProjectStore | None]:
        """The project's store with no build using it, and none starting until the block
        ends (garbage collection). None when the project has no build user, or its builds
        did not stop within ``timeout_s`` (then nothing is held)."""
        name = user_name(self.settings.instance_id, project_id)
        if not self.has_store(project_id):
            yield None
            return
        deadline = time.monotonic() + timeout_s
        with self._changed:
            # Polled: a build leaving notifies nobody unless it sweeps.
            while self._active[name] or name in self._sweeping:
                if time.monotonic() > deadline:
                    break
                self._changed.wait(0.2)
            held = not self._active[name] and name not in self._sweeping
            if held:
                self._sweeping.add(name)  # builds of the project wait, as for a sweep
        if not held:
            yield None
            return
        try:
            # Mounts the project's disk if no build has since Shipyard started.
            user, dirs = self._user_dirs(project_id)
            yield ProjectStore(user, dirs)
        finally:
            with self._changed:
                self._sweeping.discard(name)
                self._changed.notify_all()

    def _wait_idle(self, name: str, timeout_s: float = 300.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._active[name] == 0 and name not in self._sweeping:
                    return True
            time.sleep(0.2)
        return False

    def release(self, project_id: str) -> None:
        """A deleted project: once its builds have stopped, remove its user, disk, store and
        work dirs (images stay in the registry)."""
        name = user_name(self.settings.instance_id, project_id)
        if name not in self.users.all():
            return
        if not self._wait_idle(name):
            log.warning("project %s still has running builds; its sandbox is kept", project_id)
            return
        root = self.settings.root / name
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30, check=False)
        shutil.rmtree(root, ignore_errors=True)
        (self.layout.disks / f"{name}.img").unlink(missing_ok=True)
        self.users.remove(name)

    def reset_cache(self, project_id: str) -> None:
        """Drop the project's layer store (its cache and images; shared base images are
        imported again by the next build). Waits for the project's running builds; a build
        that starts meanwhile waits for the reset (emptied under it, its base image would
        vanish half-read)."""
        with self.exclusive(project_id, timeout_s=300.0) as project:
            if project is None:
                if self.has_store(project_id):
                    log.warning("project %s kept building; its cache was not reset", project_id)
                return
            empty_store(project.dirs)

    def clean_leftovers(self) -> int:
        """After a crash (before any build starts): kill what killed builds left running,
        remove their namespaces, work dirs (decrypted secrets) and working containers."""
        removed = 0
        for name in BuildCgroup.instance_groups(self.settings.instance_id):
            BuildCgroup(self.settings.instance_id, name).destroy()
        with contextlib.suppress(SandboxError):
            network.remove_stale(self.settings.instance_id)
        if not self.settings.root.is_dir():
            return 0
        for name in self.users.all():
            dirs = UserDirs(self.settings.root / name)
            if not dirs.work.is_dir():
                continue
            left = list(dirs.work.iterdir())
            for workdir in left:
                _runc_state_cleanup(dirs.runc_root, workdir)
                shutil.rmtree(workdir, ignore_errors=True)
                removed += 1
            if left and (user := self.users.lookup(name)) is not None:
                # A killed build's working containers: no build of this instance runs yet.
                self.sweep_store(user, dirs)
        return removed

    def remove(self) -> None:
        """Delete the instance's build users and everything they own (tests, uninstall)."""
        self.stop()
        self.clean_leftovers()
        for name in self.users.all():
            subprocess.run(["umount", "-l", str(self.settings.root / name)],
                           capture_output=True, timeout=30, check=False)  # fmt: skip
        unmount_under(self.settings.root)
        shutil.rmtree(self.settings.root, ignore_errors=True)
        self.users.remove_all()


@dataclass(frozen=True)
class ProjectStore:
    """A project's layer store and how to run buildah on it as the project's build user."""

    user: BuildUser
    dirs: UserDirs

    @property
    def store(self) -> BuildahStore:
        return BuildahStore(root=self.dirs.store / "root", runroot=self.dirs.store / "runroot")

    def buildah(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        argv = Launcher(uid=self.user.uid, gid=self.user.gid).wrap(
            ["buildah", *self.store.args(), *args]
        )
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s,
            env=user_env(self.user, self.dirs), check=False,
        )  # fmt: skip

    def empty(self) -> None:
        empty_store(self.dirs)


def empty_store(dirs: UserDirs) -> None:
    """Drop a project's whole store (cache and images; shared base images come back with its
    next build). No build of the project may be running."""
    unmount_under(dirs.store)
    for child in dirs.store.iterdir() if dirs.store.is_dir() else ():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    dirs.base_stamp.unlink(missing_ok=True)


def _runc_state_cleanup(runc_root: Path, workdir: Path) -> None:
    """Rootless runc state of containers whose bundle was in ``workdir`` (processes are gone:
    the cgroup was emptied)."""
    if not runc_root.is_dir():
        return
    for state in runc_root.iterdir():
        try:
            config = json.loads((state / "state.json").read_text()).get("config", {})
        except (OSError, ValueError):
            continue  # unborn (only exec.fifo): removed below
        # runc records the bundle dir (in the build's TMPDIR) as a label.
        labels = [str(label) for label in config.get("labels") or []]
        bundles = [Path(label[len("bundle=") :]) for label in labels if label.startswith("bundle=")]
        if any(bundle.is_relative_to(workdir) for bundle in bundles):
            shutil.rmtree(state, ignore_errors=True)
    remove_unborn_runc_state(runc_root)


class BaseImages:
    """Shared base images: the operator's root-owned store (``SHIPYARD_BASE_IMAGES_DIR``).

    A rootless store cannot use root-owned layers, so each image is exported once to an OCI
    archive (readable by all build users) and pulled into a project's store the first time
    it builds, or after the base store changed."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}

    def _images(self, store: BuildahStore) -> list[tuple[str, list[str]]]:
        done = subprocess.run(
            ["buildah", *store.args(), "images", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BaseImageError(f"cannot list the shared base images: {done.stderr.strip()}")
        entries = json.loads(done.stdout or "[]") or []
        return [(str(e["id"]), [str(n) for n in e.get("names") or []]) for e in entries]

    def _stamp(self, store: BuildahStore) -> str:
        index = store.root / "overlay-images" / "images.json"
        try:
            st = index.stat()
        except OSError:
            return "none"
        return f"{st.st_mtime_ns}:{st.st_size}"

    def ensure_for(self, user: BuildUser, dirs: UserDirs) -> None:
        store = self._sandbox.settings.base_store
        if store is None:
            return
        with self._lock:
            user_lock = self._user_locks.setdefault(user.name, threading.Lock())
        with user_lock:  # a build and a project's preparation must not import twice
            stamp = self._stamp(store)
            if stamp == "none":
                return
            with contextlib.suppress(OSError):
                if dirs.base_stamp.read_text() == stamp:
                    return
            with self._lock:
                images = [(i, n) for i, n in self._images(store) if n]
                archives = [(self._export(store, image_id), names) for image_id, names in images]
            launcher = Launcher(uid=user.uid, gid=user.gid)
            buildah = Buildah(
                BuildahStore(root=dirs.store / "root", runroot=dirs.store / "runroot"),
                launcher=launcher,
            )
            env = user_env(user, dirs)
            for archive, names in archives:
                pulled = subprocess.run(
                    buildah._argv("pull", "--quiet", f"oci-archive:{archive}"),
                    capture_output=True, text=True, timeout=_BASE_TIMEOUT_S, env=env, check=False,
                )  # fmt: skip
                out = pulled.stdout.strip()
                image_id = out.splitlines()[-1] if out else ""
                if pulled.returncode != 0 or not image_id:
                    cause = pulled.stderr.strip()
                    raise BaseImageError(f"cannot import base image {names[0]}: {cause}")
                subprocess.run(buildah._argv("tag", image_id, *names), capture_output=True,
                               timeout=60, env=env, check=False)  # fmt: skip
            dirs.base_stamp.write_text(stamp)

    def _export(self, store: BuildahStore, image_id: str) -> Path:
        archive = self._sandbox.layout.base_cache / f"{image_id}.tar"
        if archive.exists():
            return archive
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        done = subprocess.run(
            ["buildah", *store.args(), "push", "--quiet", image_id, f"oci-archive:{partial}"],
            capture_output=True, text=True, timeout=_BASE_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BaseImageError(f"cannot export base image {image_id[:12]}: {done.stderr.strip()}")
        partial.chmod(0o644)
        partial.rename(archive)
        return archive


DEFAULT_ROOT = Path("/var/lib/shipyard-sandbox")


def default_root(instance_id: str) -> Path:
    return DEFAULT_ROOT / instance_id


def remove_instance(instance_id: str, root: Path | None = None) -> None:
    """Remove one instance's build users, namespaces, cgroups, disks and stores (tests,
    benchmarks, uninstall). Its builds must have stopped."""
    Sandbox(
        SandboxSettings(
            root=root or default_root(instance_id),
            instance_id=instance_id,
            network=NetworkMode.NONE,
            limits=Limits(memory_bytes=1 << 30, pids=1024, cpu_shares=512),
        )
    ).remove()
