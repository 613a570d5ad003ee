"""buildah for real: builds on a local busybox base, pushes to the embedded registry."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from shipyard.pipeline.builder import (
    Buildah,
    BuildahStore,
    BuildSpec,
    build_failure_message,
    push_failure_message,
)
from shipyard.pipeline.errors import BuildFailed, Cancelled, PushFailed, TimedOut
from shipyard.pipeline.net import free_port
from shipyard.pipeline.process import Completed
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget

slow = pytest.mark.slow


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).write_text(text)
    return ctx


def _spec(tmp_path: Path, ctx: Path, **overrides: object) -> BuildSpec:
    values: dict[str, object] = {
        "context_dir": ctx,
        "dockerfile": ctx / "Dockerfile",
        "display_dockerfile": "Dockerfile",
        "tag": "localhost/test/app:1",
        "tmpdir": tmp_path / "build-tmp",
        "network": "none",
    }
    values.update(overrides)
    return BuildSpec(**values)  # type: ignore[arg-type]


def _bud(buildah: Buildah, spec: BuildSpec, lines: list[str] | None = None) -> str:
    sink = lines.append if lines is not None else (lambda _line: None)
    return buildah.bud(spec, on_line=sink, cancel=threading.Event(), timeout_s=120)


def _push(buildah: Buildah, image: str, dest: str, target: RegistryTarget, tmp: Path) -> str:
    return buildah.push(
        image,
        dest,
        target=target,
        tmpdir=tmp / "push-tmp",
        on_line=lambda _line: None,
        cancel=threading.Event(),
        timeout_s=60,
    )


def _tool(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def _store_cmd(store: BuildahStore, *args: str) -> str:
    return _tool("buildah", *store.args(), *args)


def _runc_containers(under: Path) -> dict[str, int]:
    """runc containers whose bundle is in ``under`` (one build's TMPDIR): bundle -> pid."""
    out = _tool("runc", "list", "--format", "json").strip()
    entries = json.loads(out or "null") or []
    return {e["bundle"]: e["pid"] for e in entries if e["bundle"].startswith(str(under))}


@slow
def test_multi_stage_build_stops_at_target(
    buildah: Buildah, buildah_store: BuildahStore, busybox_base: str, tmp_path: Path
) -> None:
    ctx = _context(
        tmp_path,
        f"FROM {busybox_base} AS first\n"
        "RUN echo from-first > /first\n"
        f"FROM {busybox_base} AS second\n"
        "COPY --from=first /first /copied\n"
        'RUN test "$(cat /copied)" = from-first\n'
        "LABEL stage=second\n"
        "FROM second AS broken\n"
        "RUN exit 7\n",
    )
    image_id = _bud(buildah, _spec(tmp_path, ctx, target="second"))

    assert image_id.startswith("sha256:")
    info = json.loads(
        _store_cmd(buildah_store, "inspect", "--type", "image", "localhost/test/app:1")
    )
    assert info["FromImageID"] == image_id.removeprefix("sha256:")
    labels = info["OCIv1"]["config"]["Labels"]
    assert labels["stage"] == "second"


@slow
def test_build_args_reach_the_pushed_image_config(
    buildah: Buildah, busybox_base: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    ctx = _context(
        tmp_path,
        f"FROM {busybox_base}\nARG GREETING=default\nENV GREETING=$GREETING\n"
        'LABEL greeting=$GREETING\nRUN test "$GREETING" = hello-arg\n',
    )
    image_id = _bud(buildah, _spec(tmp_path, ctx, build_args={"GREETING": "hello-arg"}))
    repo = registry.target.repository("proj", "args")
    digest = _push(buildah, image_id, f"{repo}:v1", registry.target, tmp_path)

    config = json.loads(
        _tool("skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{repo}@{digest}")
    )
    assert "GREETING=hello-arg" in config["config"]["Env"]
    assert config["config"]["Labels"]["greeting"] == "hello-arg"


@slow
def test_push_returns_the_registry_digest(
    buildah: Buildah, busybox_base: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    repo = registry.target.repository("proj", "svc")
    digest = _push(buildah, busybox_base, f"{repo}:main", registry.target, tmp_path)

    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    by_digest = json.loads(
        _tool("skopeo", "inspect", "--tls-verify=false", f"docker://{repo}@{digest}")
    )
    by_tag = json.loads(_tool("skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:main"))
    assert by_digest["Digest"] == by_tag["Digest"] == digest


def _blob_texts(oci_dir: Path) -> list[bytes]:
    """Every blob (layers decompressed, config, manifest) of an OCI layout."""
    blobs = []
    for blob in (oci_dir / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        blobs.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return blobs


@slow
def test_secret_is_readable_in_run_and_absent_from_pushed_image(
    buildah: Buildah, busybox_base: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    value = f"s3cret-{secrets.token_hex(12)}"
    marker = f"visible-{secrets.token_hex(12)}"
    # The Dockerfile holds only the hash: the value itself must appear nowhere in the image.
    expected = hashlib.sha256(value.encode()).hexdigest()
    ctx = _context(
        tmp_path,
        f"FROM {busybox_base}\n"
        "COPY marker.txt /marker.txt\n"
        "RUN --mount=type=secret,id=token "
        f"test \"$(sha256sum < /run/secrets/token | cut -d' ' -f1)\" = {expected}\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && touch /ok\n",
        files={"marker.txt": marker},
    )
    secret_file = tmp_path / "build-tmp" / "secret-token"
    secret_file.parent.mkdir()
    secret_file.write_text(value)
    secret_file.chmod(0o600)
    lines: list[str] = []
    image_id = _bud(buildah, _spec(tmp_path, ctx, secrets={"token": secret_file}), lines)

    repo = registry.target.repository("proj", "secret")
    digest = _push(buildah, image_id, f"{repo}:v1", registry.target, tmp_path)
    oci_dir = tmp_path / "pulled"
    _tool("skopeo", "copy", "--src-tls-verify=false", f"docker://{repo}@{digest}", f"oci:{oci_dir}")
    blobs = _blob_texts(oci_dir)

    assert any(marker.encode() in blob for blob in blobs)  # the grep does see file content
    assert not any(value.encode() in blob for blob in blobs)
    assert not any(value in line for line in lines)


@slow
def test_missing_dockerfile_names_the_user_path(buildah: Buildah, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\n")
    spec = _spec(
        tmp_path,
        ctx,
        dockerfile=ctx / "deploy" / "Dockerfile",
        display_dockerfile="deploy/Dockerfile",
    )
    with pytest.raises(BuildFailed) as info:
        _bud(buildah, spec)
    assert info.value.message == "Dockerfile not found at deploy/Dockerfile"


def test_missing_dockerfile_reported_by_buildah_is_classified(tmp_path: Path) -> None:
    # The race the pre-check cannot cover: the file vanished before buildah read it.
    spec = _spec(
        tmp_path, tmp_path, dockerfile=tmp_path / "Dockerfile", display_dockerfile="Dockerfile"
    )
    tail = (f"Error: stat {tmp_path}/Dockerfile: no such file or directory",)
    assert build_failure_message(spec, Completed(125, tail)) == "Dockerfile not found at Dockerfile"


def test_run_failure_with_quotes_and_oom_hint(tmp_path: Path) -> None:
    spec = _spec(tmp_path, tmp_path)
    quoted = (
        'Error: building at STEP "RUN test "$(cat /x)" = y": while running runtime: exit status 1'
    )
    assert build_failure_message(spec, Completed(1, ("noise", quoted))) == (
        'build step RUN test "$(cat /x)" = y failed with exit code 1'
    )
    oom = 'Error: building at STEP "RUN make": while running runtime: exit status 137'
    assert build_failure_message(spec, Completed(137, (oom,))).endswith(
        "exit code 137 (killed: out of memory?)"
    )
    # A retry warning mentions "Error:" mid-line; only a line starting with it counts.
    warning = 'time="x" level=warning msg="Failed, retrying ... Error: foo"'
    assert build_failure_message(spec, Completed(125, (warning,))) == (
        "buildah failed with exit code 125"
    )


def test_push_failure_messages() -> None:
    target = RegistryTarget(host="reg.example.com:443", insecure=False)
    plain = (
        'Error: pushing image "x" to "docker://reg.example.com:443/p/s:1": trying to reuse '
        "blob: pinging container registry: http: server gave HTTP response to HTTPS client"
    )
    assert push_failure_message(target, Completed(125, (plain,))) == (
        "could not push image to reg.example.com:443: it speaks plain HTTP; mark it insecure"
    )
    denied = 'Error: pushing image "x" to "docker://r/p/s:1": denied: requested access denied'
    assert push_failure_message(target, Completed(125, (denied,))) == (
        "could not push image to reg.example.com:443: denied: requested access denied"
    )


@slow
def test_unknown_target_stage(buildah: Buildah, busybox_base: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, f"FROM {busybox_base} AS app\nRUN true\n")
    with pytest.raises(BuildFailed) as info:
        _bud(buildah, _spec(tmp_path, ctx, target="nope"))
    assert info.value.message == "unknown target stage 'nope'"


@slow
def test_failing_run_step_reports_its_exit_code(
    buildah: Buildah, busybox_base: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, f"FROM {busybox_base}\nRUN echo about to fail && exit 3\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as info:
        _bud(buildah, _spec(tmp_path, ctx), lines)
    assert (
        info.value.message == "build step RUN echo about to fail && exit 3 failed with exit code 3"
    )
    assert "about to fail" in lines


@slow
def test_other_buildah_errors_keep_the_error_line(
    buildah: Buildah, busybox_base: str, tmp_path: Path
) -> None:
    ctx = _context(tmp_path, f"FROM {busybox_base}\nCOPY not-there /x\n")
    with pytest.raises(BuildFailed) as info:
        _bud(buildah, _spec(tmp_path, ctx))
    assert info.value.message.startswith('buildah failed: building at STEP "COPY not-there /x"')


@slow
def test_push_to_unreachable_registry(buildah: Buildah, busybox_base: str, tmp_path: Path) -> None:
    target = RegistryTarget(host=f"127.0.0.1:{free_port()}")
    with pytest.raises(PushFailed) as info:
        _push(buildah, busybox_base, target.repository("proj", "svc") + ":v1", target, tmp_path)
    assert info.value.message == (
        f"could not push image to {target.host}: registry unreachable (connection refused)"
    )


@slow
def test_push_with_credentials_does_not_leak_them(
    buildah: Buildah, busybox_base: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    # The embedded registry has no auth, so this checks the plumbing: the push works with
    # an auth file, the password is never in the output and the file is gone afterwards.
    target = RegistryTarget(host=registry.target.host, username="ci", password="pw-" + "x" * 20)
    lines: list[str] = []
    digest = buildah.push(
        busybox_base,
        target.repository("proj", "creds") + ":v1",
        target=target,
        tmpdir=tmp_path / "push-tmp",
        on_line=lines.append,
        cancel=threading.Event(),
        timeout_s=60,
    )
    assert digest.startswith("sha256:")
    assert not any("pw-" in line for line in lines)
    assert "pw-" not in repr(target)
    assert not (tmp_path / "push-tmp" / "shipyard-auth.json").exists()


def _gone_soon(pid: int, wait_s: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting for init to reap it counts as exited)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _start_sleeping_build(
    buildah: Buildah, busybox_base: str, tmp_path: Path
) -> tuple[BuildSpec, threading.Event]:
    ctx = _context(tmp_path, f"FROM {busybox_base}\nRUN sleep 300\n")
    return _spec(tmp_path, ctx), threading.Event()


@slow
def test_cancel_stops_a_running_step_quickly_and_leaves_nothing(
    buildah: Buildah, buildah_store: BuildahStore, busybox_base: str, tmp_path: Path
) -> None:
    spec, cancel = _start_sleeping_build(buildah, busybox_base, tmp_path)
    cancelled_at: list[float] = []

    def on_line(line: str) -> None:
        if line.startswith("STEP 2/2: RUN sleep 300"):
            # Give runc a moment to really start the container before cancelling.
            def fire() -> None:
                cancelled_at.append(time.monotonic())
                cancel.set()

            threading.Timer(1.0, fire).start()

    with pytest.raises(Cancelled):
        buildah.bud(spec, on_line=on_line, cancel=cancel, timeout_s=120)
    assert time.monotonic() - cancelled_at[0] < 5
    assert _store_cmd(buildah_store, "containers", "--quiet").strip() == ""
    assert not _runc_containers(spec.tmpdir)
    assert not spec.tmpdir.exists()


@slow
def test_timeout_raises_timed_out(buildah: Buildah, busybox_base: str, tmp_path: Path) -> None:
    spec, cancel = _start_sleeping_build(buildah, busybox_base, tmp_path)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        buildah.bud(spec, on_line=lambda _line: None, cancel=cancel, timeout_s=2)
    assert time.monotonic() - started < 8
    assert not spec.tmpdir.exists()


@slow
def test_janitor_cleans_up_after_sigkill(
    buildah: Buildah, buildah_store: BuildahStore, busybox_base: str, tmp_path: Path
) -> None:
    spec, _ = _start_sleeping_build(buildah, busybox_base, tmp_path)
    spec.tmpdir.mkdir()
    # SIGKILL is what a crashed worker looks like: buildah gets no chance to clean up.
    proc = subprocess.Popen(
        buildah.bud_argv(spec, spec.tmpdir / "iid"),
        env={**os.environ, "TMPDIR": str(spec.tmpdir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _runc_containers(spec.tmpdir):
            assert time.monotonic() < deadline, "the RUN container never started"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = _runc_containers(spec.tmpdir)
    assert left  # runc state and the `sleep 300` survive their buildah
    (sleep_pid,) = left.values()
    assert not _gone_soon(sleep_pid, wait_s=0)

    buildah.janitor(spec.tmpdir)

    assert not _runc_containers(spec.tmpdir)
    assert _gone_soon(sleep_pid)
    assert _store_cmd(buildah_store, "containers", "--quiet").strip() == ""
    assert not spec.tmpdir.exists()


def test_janitor_reads_runc_list_despite_noise_on_stderr(tmp_path: Path) -> None:
    """runc prints errors about other containers' broken state on stderr (merged into the
    output the janitor reads); the JSON listing must still be found."""
    tmpdir = tmp_path / "build-tmp"
    (tmpdir / "buildah123").mkdir(parents=True)
    deleted = tmp_path / "deleted"
    fake = tmp_path / "fake-runc"
    listing = json.dumps([{"id": "buildah-buildah123", "bundle": str(tmpdir / "buildah123")},
                          {"id": "buildah-other", "bundle": "/elsewhere/buildah9"}])  # fmt: skip
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = list ]; then\n'
        '  if [ -e "' + str(deleted) + '" ]; then echo "[]"; exit 0; fi\n'
        "  echo 'load container buildah-x: container does not exist' >&2\n"
        "  echo '" + listing + "'\n"
        'elif [ "$1" = delete ]; then echo "$3" >> "' + str(deleted) + '"; fi\n'
    )
    fake.chmod(0o755)
    store = BuildahStore(root=tmp_path / "root", runroot=tmp_path / "run")
    Buildah(store, runtime=str(fake), binary="true", exclusive_store=False).janitor(tmpdir)
    assert deleted.read_text().split() == ["buildah-buildah123"]
    assert not tmpdir.exists()


def test_sweep_removes_a_container_buildah_never_finished_recording(
    buildah: Buildah, buildah_store: BuildahStore, busybox_base: str
) -> None:
    """An abort in a step's first milliseconds can leave a container that containers/storage
    created but buildah never recorded (no builder state): ``rm --all`` does not see it."""
    container = _store_cmd(buildah_store, "from", busybox_base).strip()
    state = json.loads((buildah_store.root / "overlay-containers" / "containers.json").read_text())
    [record] = [c for c in state if container in c["names"]]
    (
        buildah_store.root / "overlay-containers" / record["id"] / "userdata" / "buildah.json"
    ).unlink()
    assert _store_cmd(buildah_store, "containers", "--quiet").strip() == ""  # buildah's own view
    buildah.sweep_store()
    assert _store_cmd(buildah_store, "containers", "--all", "--quiet").strip() == ""
