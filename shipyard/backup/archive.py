"""``shipyard backup`` / ``restore``: one gzip'd tar, written 0600, holding

- ``manifest.json``: format, Shipyard version, time, database kind, the files below;
- ``database.sqlite`` (SQLite's online backup of the live database) or ``database.pgdump``
  (``pg_dump --format=custom``);
- ``keys/secret-key``: the key every sealed value (stored build arguments, secret files,
  repository credentials, bundle URLs) is encrypted under; **without it they are lost**;
- ``keys/admin-token`` and the registry's token signing key and certificate
  (``keys/registry-auth/…``).

Not in it: the registry's images (``<data dir>/registry``), the shared base-image store and
the build sandboxes: a restored instance rebuilds or re-imports images. ``instance-id`` is
not restored either: a restored copy gets its own build users and sandbox, so it never
collides with the original on the same host.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard import __version__
from shipyard.backup import database, running
from shipyard.builds.errors import Conflict, InvalidRequest
from shipyard.registryauth.keys import CERT_FILE, KEY_FILE, auth_dir
from shipyard.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite"
PG_MEMBER = "database.pgdump"
KEYS = "keys/"
LOSS_WARNING = (
    "This archive holds the secret key. Keep it as safe as the server itself, and keep it: "
    "losing the secret key loses every sealed secret (stored build arguments, secret files, "
    "repository and registry credentials) — a database without its key cannot be unsealed."
)


@dataclass(frozen=True)
class Report:
    path: Path
    database: str  # "sqlite" | "postgresql"
    files: list[str] = field(default_factory=list)
    moved_aside: list[str] = field(default_factory=list)


def _key_files(settings: Settings) -> dict[str, bytes]:
    """Archive name → content. The secret key and admin token come from the settings (they
    may be set in the environment rather than stored in the data dir)."""
    assert settings.secret_key is not None and settings.admin_token is not None
    files = {
        "secret-key": (settings.secret_key.get_secret_value() + "\n").encode(),
        "admin-token": (settings.admin_token.get_secret_value() + "\n").encode(),
    }
    for name in (KEY_FILE, CERT_FILE):
        path = auth_dir(settings.data_dir) / name
        if path.exists():
            files[f"registry-auth/{name}"] = path.read_bytes()
    return files


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(settings: Settings, destination: Path) -> Report:
    """Write the archive (``settings`` as :func:`shipyard.settings.prepare` returns them).
    Safe while the server runs: the snapshot is a consistent copy of one moment."""
    url = settings.resolved_database_url
    sqlite = database.sqlite_file(url)
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    keys = _key_files(settings)
    with tempfile.TemporaryDirectory(prefix=".shipyard-backup-", dir=destination.parent) as tmp:
        os.chmod(tmp, 0o700)
        db_file = Path(tmp) / (SQLITE_MEMBER if sqlite else PG_MEMBER)
        if sqlite is not None:
            database.snapshot_sqlite(sqlite, db_file)
        else:
            database.dump_postgres(url, db_file)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "shipyardVersion": __version__,
            "createdAt": datetime.now(UTC).isoformat(),
            "database": "sqlite" if sqlite else "postgresql",
            "files": sorted(keys),
        }
        partial = Path(tmp) / "archive.tar.gz"
        # 0600 from the first byte: the archive holds the secret key.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            _add(tar, db_file.name, db_file.read_bytes())
            for name, data in sorted(keys.items()):
                _add(tar, KEYS + name, data)
        os.replace(partial, destination)
    return Report(destination, manifest["database"], manifest["files"])


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise InvalidRequest(f"not a Shipyard backup: {name} is missing") from None
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise InvalidRequest(f"not a Shipyard backup: {name} is not a file")
    return handle.read()


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        manifest = json.loads(_read(tar, MANIFEST))
    except ValueError:
        raise InvalidRequest("not a Shipyard backup: unreadable manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidRequest(f"unsupported backup format: {manifest.get('format')!r}")
    return manifest


_RESTORABLE = {
    "secret-key",
    "admin-token",
    f"registry-auth/{KEY_FILE}",
    f"registry-auth/{CERT_FILE}",
}


def _write_private(path: Path, data: bytes, aside: list[str], stamp: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() and path.read_bytes() != data:
        kept = path.with_name(f"{path.name}.before-restore-{stamp}")
        os.replace(path, kept)
        aside.append(str(kept))
    tmp = path.with_name(path.name + ".restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _load(source: Path, kind: str) -> tuple[bytes, dict[str, bytes]]:
    """The archive's database and keys (read by name: nothing is extracted to disk)."""
    try:
        with tarfile.open(source, mode="r:gz") as tar:
            manifest = _manifest(tar)
            if manifest.get("database") != kind:
                raise InvalidRequest(
                    f"the backup holds a {manifest.get('database')} database; "
                    f"this server uses {kind}"
                )
            db_data = _read(tar, SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER)
            names = [n for n in manifest.get("files", []) if n in _RESTORABLE]
            return db_data, {name: _read(tar, KEYS + name) for name in names}
    except (OSError, tarfile.TarError) as exc:
        raise InvalidRequest(f"cannot read {source}: {exc}") from None


def restore(settings: Settings, source: Path, *, force: bool = False) -> Report:
    """Install the archive's database and keys for ``settings`` (a plain ``Settings()``: no
    key is generated first). Refuses while a server uses the data dir unless ``force``.
    Files it replaces are kept beside as ``NAME.before-restore-<time>``."""
    data_dir = settings.data_dir.resolve()
    if running.in_use(data_dir) and not force:
        raise Conflict(
            f"a Shipyard server is running on {data_dir}: stop it first (or pass --force "
            "to overwrite its data under it)"
        )
    url = settings.resolved_database_url
    sqlite = database.sqlite_file(url)
    kind = "sqlite" if sqlite else "postgresql"
    db_data, keys = _load(source, kind)
    if "secret-key" not in keys:
        raise InvalidRequest("the backup has no secret key: its sealed values cannot be read")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".shipyard-restore-", dir=data_dir) as tmp:
        staged = Path(tmp) / "database"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(db_data)
        if sqlite is not None:
            if sqlite.exists():
                kept = sqlite.with_name(f"{sqlite.name}.before-restore-{stamp}")
                database.snapshot_sqlite(sqlite, kept)
                aside.append(str(kept))
            sqlite.parent.mkdir(parents=True, exist_ok=True)
            # Staged beside the target: the final rename stays on one file system.
            beside = sqlite.with_name(f".{sqlite.name}.restoring")
            shutil.move(staged, beside)
            database.install_sqlite(beside, sqlite)
        else:
            database.restore_postgres(url, staged)
    for name, data in keys.items():
        _write_private(data_dir / name, data, aside, stamp)
    return Report(source, kind, sorted(keys), aside)
