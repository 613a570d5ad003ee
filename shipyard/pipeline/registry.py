"""Where images go: an external registry target, or Shipyard's own loopback registry.

The Debian ``docker-registry`` service does not start on these machines (DESIGN.md,
"Building with buildah"), so Shipyard runs ``docker-registry serve <config>`` itself,
bound to 127.0.0.1 unless workers on other machines push to it (``SHIPYARD_REGISTRY_LISTEN``;
docs/workers.md). It speaks plain HTTP, so it must not face an untrusted network; it requires
a bearer token from Shipyard's token endpoint (distribution's token auth, ``TokenAuth``);
only Shipyard's own identity is ever granted deletes (garbage collection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from shipyard.pipeline.net import free_port

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 5.0
ORPHAN_GRACE_S = 1.0  # an orphaned registry serves nobody: a short grace, then SIGKILL
# Restarts of a registry that exited: the first at once-ish, then slower while it keeps
# failing; a registry that stayed up this long starts the back-off anew.
RESTART_DELAYS_S = (0.2, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0

# A registry host: name or IPv4 with optional port, or a bracketed IPv6 address.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
# One path component of a repository name, as the distribution spec allows it.
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


class RegistryStartError(RuntimeError):
    """The embedded registry did not come up; the message carries its own output."""


def _check_path(path: str, what: str) -> None:
    for part in path.split("/"):
        if not _COMPONENT.match(part):
            raise ValueError(
                f"invalid {what} {path!r}: {part!r} is not a valid repository component"
            )


@dataclass(frozen=True)
class RegistryTarget:
    """A registry to push to: ``host[:port]`` plus an optional repository prefix."""

    host: str
    prefix: str = ""
    insecure: bool = True  # plain HTTP / unverified TLS (``--tls-verify=false``)
    username: str | None = None
    # repr=False: targets end up in log lines and tracebacks; the password must not.
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _HOST.match(self.host):
            raise ValueError(f"invalid registry host {self.host!r} (expected host[:port])")
        if self.prefix:
            _check_path(self.prefix, "registry prefix")
        if (self.username is None) != (self.password is None):
            raise ValueError("registry username and password must be given together")

    @classmethod
    def parse(
        cls,
        value: str,
        *,
        insecure: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> RegistryTarget:
        """Parse ``host:port[/prefix]`` (the ``SHIPYARD_REGISTRY`` setting)."""
        text = value.strip().rstrip("/")
        if "://" in text:
            # buildah picks http/https itself (``--tls-verify``); a scheme here is a mistake
            # that would otherwise end up inside every image name.
            raise ValueError(f"registry {value!r} must be host[:port][/prefix], without a scheme")
        host, _, prefix = text.partition("/")
        return cls(
            host=host, prefix=prefix, insecure=insecure, username=username, password=password
        )

    def repository(self, project_id: str, name: str) -> str:
        """``host[/prefix]/project_id/name``: one repository per service (or job)."""
        _check_path(project_id, "project id")
        _check_path(name, "repository name")
        parts = [self.host, self.prefix, project_id, name]
        return "/".join(part for part in parts if part)


@dataclass(frozen=True)
class TokenAuth:
    """distribution's ``auth.token`` section: where clients get tokens (``realm``), the
    audience (``service``) and issuer the tokens must name, and the certificate whose key
    signs them (``rootcertbundle``)."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path

    def config(self) -> dict[str, str]:
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.rootcertbundle),
        }


def _port_is_free(port: int, listen: str = LOOPBACK) -> bool:
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the registry binds (Go sets SO_REUSEADDR): its own TIME-WAIT sockets from a
        # previous run must not make the port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it holds no port)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


class EmbeddedRegistry:
    """``docker-registry serve`` on 127.0.0.1, data under ``<data_dir>/registry``.

    ``auth``: the token auth the registry enforces. Shipyard's runtime always passes one;
    without it the registry is open to every local process, which only pipeline tests that
    exercise buildah alone may want. ``listen``: the bind address, 127.0.0.1 unless workers
    on other machines push here (``SHIPYARD_REGISTRY_LISTEN``); clients on this machine use
    127.0.0.1 either way."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        auth: TokenAuth | None = None,
        listen: str = LOOPBACK,
        binary: str = "docker-registry",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._port = port
        self.auth = auth
        self.listen = listen
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._read_only = False
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0  # how often the supervisor brought it back (metrics, tests)

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "registry.yml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "registry.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "registry.pid"

    def _stop_orphan(self) -> None:
        """A Shipyard killed with SIGKILL leaves its registry running (own session) on the
        port; stop it if the pid file names a registry serving this data dir's config."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() not in cmdline:
            return
        # SIGCONT too: a frozen (stopped) registry would hold SIGTERM until woken. Nobody is
        # served by an orphan, so it gets a short grace and then SIGKILL.
        for sig, grace_s in ((signal.SIGTERM, ORPHAN_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
                os.killpg(pid, signal.SIGCONT)
            deadline = time.monotonic() + grace_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _alive(pid):
                return

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the embedded registry has no port until it is started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def target(self) -> RegistryTarget:
        """The registry without credentials (enough for naming repositories)."""
        return RegistryTarget(host=f"{LOOPBACK}:{self.port}", insecure=True)

    def target_with(self, username: str, password: str) -> RegistryTarget:
        """The registry with credentials for the token endpoint (written to an authfile)."""
        return RegistryTarget(
            host=f"{LOOPBACK}:{self.port}", insecure=True, username=username, password=password
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        # JSON is valid YAML, and json.dumps quotes any path safely.
        config: dict[str, object] = {
            "version": "0.1",
            # error: at info the registry logs every request, at warn every token challenge
            # (each client's first /v2/ call), and the log file is never rotated.
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                # On for garbage collection only: the token endpoint grants ``delete`` to
                # Shipyard's own identity and nothing else (registryauth.scopes), so no
                # build, user or leaked token can remove an image. Without token auth every
                # local process could: then off.
                "delete": {"enabled": self.auth is not None},
                # Read-only while the offline garbage collector runs (``maintenance``).
                "maintenance": {"readonly": {"enabled": self._read_only}},
            },
            # A fixed secret per start silences the "no HTTP secret" warning; uploads never
            # span a restart of a single instance, so it need not persist.
            "http": {"addr": f"{self._bind}:{self.port}", "secret": secrets.token_hex(16)},
        }
        if self.auth is not None:
            config["auth"] = {"token": self.auth.config()}
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    @property
    def _bind(self) -> str:
        return f"[{self.listen}]" if ":" in self.listen else self.listen

    def _output_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def start(self) -> None:
        """Start it and keep it running: a registry that exits (killed, crashed) is
        restarted with back-off until ``stop``."""
        with self._lock:
            self._stopping.clear()
            self._start_process()
            if self._supervisor is None or not self._supervisor.is_alive():
                self._supervisor = threading.Thread(
                    target=self._supervise, name="registry-supervisor", daemon=True
                )
                self._supervisor.start()

    def _supervise(self) -> None:
        attempt, started = 0, time.monotonic()
        while not self._stopping.wait(0.2):
            with self._lock:
                proc = self._proc
                if self._stopping.is_set() or proc is None or proc.poll() is None:
                    if time.monotonic() - started > STABLE_AFTER_S:
                        attempt = 0
                    continue
            delay = RESTART_DELAYS_S[min(attempt, len(RESTART_DELAYS_S) - 1)]
            log.warning(
                "the embedded registry exited with code %s; restarting it in %g s",
                proc.returncode,
                delay,
            )
            if self._stopping.wait(delay):
                return
            attempt += 1
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._close_log()
                    self._start_process()
                except (RegistryStartError, OSError) as exc:
                    log.error("restarting the embedded registry failed: %s", exc)
                    continue
                self.restarts += 1
                started = time.monotonic()
                log.warning("the embedded registry is running again")

    def _start_process(self) -> None:
        if self.running:
            return
        self._stop_orphan()
        if self._port is None:
            self._port = free_port(LOOPBACK)
        if not _port_is_free(self.port, self.listen):
            # Checked first because another registry on this port would answer /v2/ with
            # 200 and make a failed start look like a successful one.
            raise RegistryStartError(
                f"cannot start the registry: {self._bind}:{self.port} is in use"
            )
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        # REGISTRY_* variables override the config file; drop them so the file is the truth.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._log = self.log_path.open("ab")
        # Output goes to a file, not a pipe: nobody reads a pipe after start-up and a full
        # pipe would block the registry.
        self._proc = subprocess.Popen(
            [self.binary, "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group: Ctrl-C on a CLI must not kill it first
        )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready()
        except BaseException:
            self._stop_process()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        probe = f"{self.url}/v2/"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RegistryStartError(
                    f"docker-registry exited with code {code} during start-up:"
                    f"\n{self._output_tail()}"
                )
            try:
                response = httpx.get(probe, timeout=1.0, trust_env=False)
                # 401 is the answer of a registry that wants a token: up and well.
                if response.status_code == 200 or (
                    self.auth is not None and response.status_code == 401
                ):
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RegistryStartError(
                    f"docker-registry did not answer {probe} within {self.startup_timeout_s:g} s:"
                    f"\n{self._output_tail()}"
                )
            time.sleep(0.05)

    def answering(self, timeout_s: float = 2.0) -> bool:
        """The registry answers ``/v2/`` (401, asking for a token, counts)."""
        try:
            code = httpx.get(f"{self.url}/v2/", timeout=timeout_s, trust_env=False).status_code
        except httpx.HTTPError:
            return False
        return code == 200 or (self.auth is not None and code == 401)

    def stop(self) -> None:
        self._stopping.set()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout=5)
        with self._lock:
            self._stop_process()

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=STOP_GRACE_S)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        elif proc is not None:
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- garbage collection (shipyard.gc) ------------------------------------------------

    def _restart(self, *, read_only: bool) -> None:
        # Under the supervisor's lock: it must not take the stopped process for a crash.
        with self._lock:
            self._stop_process()
            self._read_only = read_only
            self._start_process()

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[None]:
        """The registry restarted read-only for the duration (pulls go on, pushes are
        refused), then read-write again: distribution's garbage collector must not run while
        anything can push (a blob uploaded during its mark phase would be swept)."""
        self._restart(read_only=True)
        try:
            yield
        finally:
            self._restart(read_only=False)

    def collect_garbage(self, timeout_s: float = 1800.0) -> str:
        """``docker-registry garbage-collect``: delete blobs no manifest references any more.
        Only inside ``maintenance``. Without ``--delete-untagged``: every image Shipyard
        pushes keeps its build-id tag, so untagged manifests are the children of an index or
        artifacts it has not learnt of, which distribution 2.8 would wrongly sweep."""
        if not self._read_only:
            raise RuntimeError("garbage-collect runs only while the registry is read-only")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        done = subprocess.run(
            [self.binary, "garbage-collect", str(self.config_path)],
            capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
            raise RuntimeError(f"docker-registry garbage-collect failed: {tail}")
        return done.stdout

    def __enter__(self) -> EmbeddedRegistry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
