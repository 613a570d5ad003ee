"""The start-up half of migration 0005: seal what the migration could only move.

The migration has no key. It moved create-time ``buildFiles`` / ``dockerSecretMounts`` out
of the clear ``spec`` into ``workloads.pending_secrets`` (``{}`` for a workload whose sealed
set only needs rewriting in the new shape). This pass merges them under the sealed set,
seals, and clears the column; after it, nothing secret is left in clear. Idempotent, and
one query when there is nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.request import Overrides
from shipyard.builds.secret_files import SecretFile
from shipyard.builds.service import store_secrets, stored_secrets
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Workload


def _files(values: Any) -> dict[str, SecretFile]:
    if not isinstance(values, Mapping):
        return {}
    return {str(k): SecretFile.from_json(v) for k, v in values.items()}


def reseal(sessions: sessionmaker[Session], box: SecretBox) -> int:
    """Seal every workload's pending secrets; returns how many workloads were rewritten."""
    with sessions() as session:
        rows = list(session.scalars(select(Workload).where(Workload.pending_secrets.is_not(None))))
        if not rows:
            return 0
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:
            # Overwritten clear values must not stay readable in freed pages (per connection:
            # switched off again below, it slows every write).
            session.execute(text("PRAGMA secure_delete=ON"))
        try:
            for workload in rows:
                pending = workload.pending_secrets or {}
                created = Overrides(
                    build_files=_files(pending.get("buildFiles")),
                    secret_mounts=_files(pending.get("dockerSecretMounts")),
                )
                # Values already sealed came from an explicit POST …/build-arguments: they win.
                stored = stored_secrets(box, workload)
                store_secrets(box, workload, created.under(stored, stored.docker))
                workload.pending_secrets = None
            session.commit()
            if sqlite:
                session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        finally:
            if sqlite:
                session.execute(text("PRAGMA secure_delete=OFF"))
        return len(rows)
