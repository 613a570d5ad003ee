"""Shared helpers: statistics on paired ratios, results files, Shipyard servers, buildah stores,
sample repositories. Everything here runs on this machine only (loopback, file:// remotes)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shipyard.pipeline.builder import Buildah, BuildahStore, BuildSpec, unmount_under
from shipyard.pipeline.net import free_port
from shipyard.sandbox.sandbox import remove_instance
from shipyard.settings import read_instance_id

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent

# --------------------------------------------------------------------------------------
# Options and statistics


@dataclass(frozen=True)
class Options:
    quick: bool = False

    def runs(self, full: int = 5, quick: int = 2) -> int:
        return quick if self.quick else full


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """median / min / max / n of a sample (the only statistics the report shows)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "n": len(vals),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Ratios of runs measured side by side (same index = same round of the interleave)."""
    return [n / d for n, d in zip(num, den, strict=True) if d > 0]


def figure(
    fid: str,
    label: str,
    values: Sequence[float],
    *,
    target: tuple[str, float] | None = None,
    context: str = "",
    unit: str = "ratio",
    digits: int = 3,
) -> dict[str, Any]:
    """One reported figure: by default a ratio measured side by side (paired per round);
    ``unit`` says otherwise (e.g. "ms" for an absolute latency target)."""
    stats = summary(values, digits)
    met: bool | None = None
    if target is not None and stats["median"] is not None:
        op, value = target
        met = {
            "<=": stats["median"] <= value,
            "<": stats["median"] < value,
            ">=": stats["median"] >= value,
            ">": stats["median"] > value,
        }[op]
    return {
        "id": fid,
        "label": label,
        "unit": unit,
        "value": stats,
        "target": f"{target[0]} {target[1]:g}" + ("" if unit == "ratio" else f" {unit}")
        if target
        else None,
        "met": met,
        "context": context,
    }


def fmt_s(values: Sequence[float]) -> str:
    s = summary(values)
    if s["median"] is None:
        return "-"
    return f"{s['median']:.2f} s ({s['min']:.2f}–{s['max']:.2f})"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "shipyard"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        info["commit"] = head + (" (shipyard/ modified)" if dirty else "")
    for tool in ("buildah", "git"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
            info[tool] = out.stdout.strip().splitlines()[0] if out.stdout else None
    return info


def results_dir(opts: Options) -> Path:
    # A smoke run must not overwrite the committed figures.
    path = RESULTS / "quick" if opts.quick else RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(name: str, opts: Options, result: dict[str, Any]) -> Path:
    path = results_dir(opts) / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A temp dir removed afterwards, with any overlay mount buildah left under it."""
    path = Path(tempfile.mkdtemp(prefix=f"shipyard-bench-{prefix}-"))
    try:
        yield path
    finally:
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------
# git


GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, input=input
    )
    return out.stdout.decode().strip()


def random_bytes(seed: int, size: int) -> bytes:
    """Incompressible but reproducible content (like a binary asset)."""
    import random

    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------------------
# The sample application of benchmarks 1 and 2


BASE_IMAGE = "localhost/shipyard-bench/busybox:latest"

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""

# Two stages, 13 steps that each make a layer or a config change, a 20 MB COPY and RUN steps
# on the locally built base; ``late.txt`` is only read by the last two steps.
SAMPLE_DOCKERFILE = f"""\
FROM {BASE_IMAGE} AS deps
WORKDIR /src
COPY deps/ /src/deps/
RUN cat /src/deps/*.txt | sha256sum > /deps.sum
COPY assets/blob.bin /src/blob.bin
RUN sha256sum /src/blob.bin > /blob.sum && mkdir -p /out && cp /src/blob.bin /out/

FROM {BASE_IMAGE}
ENV APP_NAME=bench APP_ENV=production
LABEL org.opencontainers.image.title="shipyard-bench"
COPY --from=deps /deps.sum /blob.sum /meta/
COPY --from=deps /out/blob.bin /app/blob.bin
RUN mkdir -p /app/bin && echo '#!/bin/sh' > /app/bin/start && chmod +x /app/bin/start
COPY src/ /app/src/
RUN ls -lR /app/src > /app/listing.txt
COPY late.txt /app/late.txt
RUN wc -c /app/late.txt > /app/late.size
"""


@dataclass(frozen=True)
class SampleRepo:
    url: str  # file:// URL of a bare repository
    sha: str  # the commit every cold/warm build uses
    late_sha: str  # child of ``sha`` that changes only late.txt
    blob_bytes: int


def make_sample_repo(root: Path, blob_bytes: int) -> SampleRepo:
    work, bare = root / "sample", root / "sample.git"
    work.mkdir(parents=True)
    git(root, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    git(work, "init", "-q", "--initial-branch=main")
    (work / "Dockerfile").write_text(SAMPLE_DOCKERFILE)
    (work / "deps").mkdir()
    for i in range(5):
        (work / "deps" / f"dep{i}.txt").write_text(f"dependency {i}\n" * 50)
    (work / "assets").mkdir()
    (work / "assets" / "blob.bin").write_bytes(random_bytes(20, blob_bytes))
    (work / "src").mkdir()
    for i in range(20):
        (work / "src" / f"module{i}.py").write_text(f"def f{i}():\n    return {i}\n" * 20)
    (work / "late.txt").write_text("version 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "sample app")
    sha = git(work, "rev-parse", "HEAD")
    (work / "late.txt").write_text("version 2\n")
    git(work, "commit", "-qam", "late change")
    late_sha = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
    return SampleRepo(url=f"file://{bare}", sha=sha, late_sha=late_sha, blob_bytes=blob_bytes)


def seed_base_image(store: BuildahStore, workdir: Path, buildah: Buildah | None = None) -> None:
    """Build the busybox base into ``store`` (nothing can be pulled here: no network);
    ``buildah``: a rootless one for that store (its user must be able to read ``workdir``)."""
    context = workdir / "busybox-context"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    spec = BuildSpec(
        context_dir=context.resolve(),
        dockerfile=(context / "Dockerfile").resolve(),
        display_dockerfile="Dockerfile",
        tag=BASE_IMAGE,
        tmpdir=(workdir / "busybox-tmp").resolve(),
        network="none",
    )
    lines: list[str] = []
    if buildah is not None and buildah.launcher is not None:
        spec.tmpdir.mkdir(parents=True, exist_ok=True)
        for path in (workdir, context, spec.tmpdir, *context.iterdir()):
            os.chown(path, buildah.launcher.uid, buildah.launcher.gid)
    try:
        (buildah or Buildah(store)).bud(
            spec, on_line=lines.append, cancel=threading.Event(), timeout_s=180
        )
    except Exception as exc:
        raise RuntimeError("seeding the busybox base failed:\n" + "\n".join(lines[-20:])) from exc
    shutil.rmtree(context, ignore_errors=True)


def store_under(directory: Path) -> BuildahStore:
    """A root-owned store under ``directory`` (the raw pipeline's)."""
    return BuildahStore(
        root=directory / "buildah" / "root", runroot=directory / "buildah" / "runroot"
    )


def base_images_store(data_dir: Path) -> BuildahStore:
    """``shipyard up``'s shared base-image store: every project builds FROM its images."""
    return BuildahStore(
        root=data_dir / "base-images" / "root", runroot=data_dir / "base-images" / "runroot"
    )


# --------------------------------------------------------------------------------------
# A live Shipyard (``shipyard up`` in a child process group of ours)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    registry: str
    data_dir: Path
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def stop(self) -> None:
        stop_process_group(self.proc)
        # Its build users, namespaces, cgroups and project disks.
        with contextlib.suppress(OSError):
            remove_instance(read_instance_id(self.data_dir))

    def authfile(self, path: Path) -> Path:
        """An auth file for the embedded registry with the admin token (the raw pipeline
        pushes with it: the registry wants a token, Shipyard issues it)."""
        auth = base64.b64encode(f"admin:{self.token}".encode()).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": {self.registry: {"auth": auth}}}))
        path.chmod(0o600)
        return path


def stop_process_group(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    """Stop a child we started in its own session (never anything else)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen[Any], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            stop_process_group(proc)
            raise RuntimeError(f"{url} did not come up:\n{tail}")
        time.sleep(0.1)


def start_server(data_dir: Path, argv: Sequence[str] | None = None, **env: str) -> Server:
    """``shipyard up`` (or ``argv``, which reads the same settings) on free loopback ports,
    builds without network (like the tests)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port, registry_port = free_port(), free_port()
    log_path = data_dir.parent / f"server-{port}.log"
    # Inherited SHIPYARD_* settings (e.g. a developer's DATABASE_URL) must not leak in.
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")},
        "SHIPYARD_DATA_DIR": str(data_dir),
        "SHIPYARD_HOST": "127.0.0.1",
        "SHIPYARD_PORT": str(port),
        "SHIPYARD_REGISTRY_PORT": str(registry_port),
        "SHIPYARD_BUILD_NETWORK": "none",
        "SHIPYARD_ALLOWED_LOCAL_ROOTS": tempfile.gettempdir(),
        # Benches measure throughput, one project at a time: the per-project abuse caps
        # (SECURITY.md, "API hardening") would turn their load into 429s.
        "SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT": "1000000000",
        "SHIPYARD_MAX_LOG_STREAMS_PER_PROJECT": "1000000",
        "SHIPYARD_MAX_PENDING_UPLOADS": "1000000",
        "SHIPYARD_WEBHOOK_MAX_CONCURRENT": "1000000",
        **env,
    }
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(argv or [str(BIN / "shipyard"), "up"]),
            env=environment,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/openapi.json", proc, log_path)
    token = (data_dir / "admin-token").read_text().strip()
    return Server(proc, url, token, f"127.0.0.1:{registry_port}", data_dir, log_path)


def create_service(server: Server, project: str, service: str, repo_url: str) -> None:
    with server.client() as c:
        r = c.post("/v1/projects", json={"name": project})
        r.raise_for_status()
        r = c.post(
            f"/v1/projects/{project}/services/build",
            json={
                "name": service,
                "vcsData": {"projectUrl": repo_url, "projectType": "self-hosted"},
            },
        )
        r.raise_for_status()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value
