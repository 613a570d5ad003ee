"""``shipyard images import``: an OCI layout directory, an OCI archive, a docker archive or
an external registry's image, copied with skopeo into the shared base-image store
(``SHIPYARD_BASE_IMAGES_DIR``, default ``<data dir>/base-images``), or with ``--registry``
into the embedded registry under a shared prefix.

The store, not the embedded registry: an image there is exported to each project's own store
before its next build, and a ``FROM localhost/NAME:TAG`` is never pulled (``localhost/`` names
are local only), so it works on a host without any registry and without a registry host and
port written into Dockerfiles.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shipyard.builds.errors import InvalidRequest, Upstream
from shipyard.pipeline.builder import STORAGE_DRIVER, BuildahStore
from shipyard.pipeline.registry import LOOPBACK
from shipyard.registryauth.authority import credentials
from shipyard.settings import Settings

COPY_TIMEOUT_S = 1800.0
# A docker reference's path and tag (lower-case path components, tag of 1-128 characters).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?$")
# skopeo's other transports: a local path given to --from is a mistake, not a registry host.
_TRANSPORTS = re.compile(
    r"^(?:oci|oci-archive|docker-archive|docker-daemon|dir|containers-storage|ostree|sif|"
    r"tarball):"
)


@dataclass(frozen=True)
class Imported:
    name: str  # what a Dockerfile builds FROM
    digest: str
    source: str


def base_store(settings: Settings) -> BuildahStore:
    """The store ``shipyard/executors/runtime.py`` hands to the sandbox as its base store."""
    base = settings.base_images_dir or settings.data_dir / "base-images"
    return BuildahStore(root=base / "root", runroot=base / "runroot")


def local_name(name: str) -> str:
    """``shared/busybox:1`` → ``localhost/shared/busybox:1`` (``:latest`` when untagged)."""
    bare = name.removeprefix("localhost/")
    match = _NAME.match(bare)
    if match is None:
        raise InvalidRequest(
            f"invalid image name {name!r}: lower-case path components and an optional :tag, "
            "e.g. shared/busybox:1.36"
        )
    return f"localhost/{match['path']}:{match['tag'] or 'latest'}"


def source_reference(path: Path) -> str:
    """The skopeo reference of a local OCI directory, OCI archive or docker archive."""
    if path.is_dir():
        if not (path / "oci-layout").is_file():
            raise InvalidRequest(f"{path} is a directory without an oci-layout file")
        return f"oci:{path.resolve()}"
    if not path.is_file():
        raise InvalidRequest(f"{path} does not exist")
    try:
        with tarfile.open(path) as tar:
            names = {n.removeprefix("./") for n in tar.getnames()}
    except (OSError, tarfile.TarError) as exc:
        raise InvalidRequest(
            f"{path} is neither an OCI directory nor a tar archive: {exc}"
        ) from None
    if "oci-layout" in names:
        return f"oci-archive:{path.resolve()}"
    if "manifest.json" in names:
        return f"docker-archive:{path.resolve()}"
    raise InvalidRequest(f"{path} is neither an OCI archive nor a docker archive")


def default_name(source: str) -> str:
    """A name when none is given: the remote's repository path and tag, or the file's stem."""
    if source.startswith("docker://"):
        reference = source.removeprefix("docker://").split("@", 1)[0]
        first, _, rest = reference.partition("/")
        path = (
            rest if rest and ("." in first or ":" in first or first == "localhost") else reference
        )
        return path.removeprefix("library/")
    stem = Path(source.split(":", 1)[1]).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "image"


def remote_reference(reference: str) -> str:
    if _TRANSPORTS.match(reference):
        raise InvalidRequest(f"--from takes a registry reference (host/path:tag), not {reference}")
    return reference if reference.startswith("docker://") else f"docker://{reference}"


def _creds_authfile(directory: Path, reference: str, creds: str) -> Path:
    """``user:password`` as an authfile (0600) for the reference's registry: never argv."""
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise InvalidRequest("--creds must be USER:PASSWORD")
    first, sep, _ = reference.removeprefix("docker://").partition("/")
    # Docker's rule: a first component that is no host (no dot, port or localhost) is Hub's.
    is_host = sep and ("." in first or ":" in first or first == "localhost")
    host = first if is_host else "docker.io"
    return _write_authfile(directory / "auth.json", host, user, password)


def _write_authfile(path: Path, host: str, username: str, password: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        json.dump({"auths": {host: {"auth": token}}}, out)
    return path


def _copy(
    source: str,
    destination: str,
    tmp: Path,
    *,
    creds: str | None,
    authfile: Path | None,
    tls_verify: bool,
    dest_args: list[str],
) -> str:
    """``skopeo copy``; returns the manifest digest written."""
    argv = ["skopeo", "copy", "--quiet", "--retry-times", "2", *dest_args]
    if creds is not None:
        argv += ["--src-authfile", str(_creds_authfile(tmp, source, creds))]
    elif authfile is not None:
        argv += ["--src-authfile", str(authfile)]
    if source.startswith("docker://") and not tls_verify:
        argv.append("--src-tls-verify=false")
    digest_file = tmp / "digest"
    argv += ["--digestfile", str(digest_file), "--", source, destination]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    env["TMPDIR"] = str(tmp)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COPY_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise Upstream(f"importing {source} took longer than {COPY_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        cause = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise Upstream(f"cannot import {source}: {cause[0]}")
    return digest_file.read_text().strip() if digest_file.exists() else ""


def import_image(
    settings: Settings,
    source: str,
    name: str,
    *,
    creds: str | None = None,
    authfile: Path | None = None,
    tls_verify: bool = True,
) -> Imported:
    """Copy ``source`` (a skopeo reference) into the base store as ``name``."""
    store = base_store(settings)
    target = local_name(name)
    store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    store.runroot.mkdir(parents=True, exist_ok=True, mode=0o700)
    destination = f"containers-storage:[{STORAGE_DRIVER}@{store.root}+{store.runroot}]{target}"
    with tempfile.TemporaryDirectory(prefix="shipyard-import-") as tmp:
        digest = _copy(
            source, destination, Path(tmp),
            creds=creds, authfile=authfile, tls_verify=tls_verify, dest_args=[],
        )  # fmt: skip
    return Imported(target, digest, source)


def registry_name(settings: Settings, name: str) -> str:
    """``shared/busybox:1`` → ``127.0.0.1:5000/shared/busybox:1`` in the embedded registry;
    only under a shared prefix (``SHIPYARD_REGISTRY_SHARED_PREFIXES``): what every project
    may pull."""
    if settings.registry:
        raise InvalidRequest(
            "--registry pushes to the embedded registry; with SHIPYARD_REGISTRY set, push "
            "to that registry with its own tools and credentials"
        )
    bare = local_name(name).removeprefix("localhost/")
    if bare.split("/", 1)[0] not in settings.registry_shared_prefixes or "/" not in bare:
        prefixes = ", ".join(f"{p}/" for p in settings.registry_shared_prefixes)
        raise InvalidRequest(f"--registry names must be under a shared prefix ({prefixes})")
    return f"{LOOPBACK}:{settings.registry_port}/{bare}"


def push_to_registry(
    settings: Settings,
    source: str,
    name: str,
    *,
    creds: str | None = None,
    authfile: Path | None = None,
    tls_verify: bool = True,
) -> Imported:
    """Copy ``source`` into the embedded registry (running: ``shipyard up``) under a shared
    prefix, with Shipyard's internal credential."""
    target = registry_name(settings, name)
    username, password = credentials(settings).internal_credential()
    with tempfile.TemporaryDirectory(prefix="shipyard-import-") as tmp:
        dest_auth = _write_authfile(
            Path(tmp) / "dest-auth.json", target.split("/", 1)[0], username, password
        )
        dest_args = ["--dest-authfile", str(dest_auth), "--dest-tls-verify=false"]
        digest = _copy(
            source, f"docker://{target}", Path(tmp),
            creds=creds, authfile=authfile, tls_verify=tls_verify, dest_args=dest_args,
        )  # fmt: skip
    return Imported(target, digest, source)


def list_images(settings: Settings) -> list[dict[str, object]]:
    store = base_store(settings)
    if not (store.root / "overlay-images" / "images.json").exists():
        return []
    done = subprocess.run(
        ["buildah", *store.args(), "images", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise Upstream(f"cannot list the base images: {done.stderr.strip()}")
    return [
        {"names": e.get("names") or [], "digest": e.get("digest", ""), "size": e.get("size", "")}
        for e in json.loads(done.stdout or "[]") or []
    ]
