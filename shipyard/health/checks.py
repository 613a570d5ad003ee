"""What "ready" means: the database takes writes, the registry answers, builds can run.

Each check is a plain function returning a :class:`Check`; ``/readyz`` runs them with a bound
on their time (a hung database is a failing check, not a hung probe). Messages name the part
and the reason, never a credential or a URL with one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget

RUNC = "/usr/sbin/runc"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok}
        if self.message:
            body["message"] = self.message
        return body


def _reason(exc: BaseException) -> str:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return first[0][:200] if first else type(exc).__name__


def database_writable(sessions: sessionmaker[Session]) -> Check:
    """A write that changes nothing, rolled back: it takes the database's write lock (a
    read-only file, a full disk at the lock, a read-only replica fail it)."""
    try:
        with sessions() as session:
            session.execute(text("UPDATE alembic_version SET version_num = version_num"))
            session.rollback()
    except Exception as exc:
        return Check("database", False, f"the database does not take writes: {_reason(exc)}")
    return Check("database", True)


def registry_answering(
    embedded: EmbeddedRegistry | None, target: RegistryTarget, timeout_s: float = 2.0
) -> Check:
    """The embedded registry answers ``/v2/`` (its supervisor restarts it when it exits; a
    frozen one fails here); an external one answers at all (401 counts)."""
    if embedded is not None:
        if embedded.answering(timeout_s):
            return Check("registry", True)
        return Check("registry", False, f"the embedded registry on {target.host} is not answering")
    scheme = "http" if target.insecure else "https"
    try:
        httpx.get(f"{scheme}://{target.host}/v2/", timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        return Check("registry", False, f"the registry {target.host} is not answering ({exc})")
    return Check("registry", True)


def builder_usable(*, accepting: bool, starting: bool) -> Check:
    """buildah and runc are there, and the executor takes builds (it has finished cleaning
    up after a previous process and is not shutting down)."""
    if shutil.which("buildah") is None:
        return Check("builder", False, "buildah is not installed (not on PATH)")
    if not os.access(RUNC, os.X_OK):
        return Check("builder", False, f"runc is not installed ({RUNC})")
    if starting:
        return Check(
            "builder", False, "the executor is still starting (cleaning up after the last run)"
        )
    if not accepting:
        return Check("builder", False, "Shipyard is shutting down: no new builds start")
    return Check("builder", True)
