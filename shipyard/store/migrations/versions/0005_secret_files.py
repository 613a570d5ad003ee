"""Secret files as Northflank defines them; create-time secrets out of the clear ``spec``.

Northflank's ``{data, encoding}``: ``data`` is always base64 of the file's bytes and
``encoding`` the file's original text encoding. Before this revision Shipyard read
``encoding: utf-8`` as "``data`` is the text itself", and kept the ``buildFiles`` /
``dockerSecretMounts`` of a create body in clear in ``workloads.spec`` (echoed, never used).

What this migration does, and what it leaves to the application (it has no key to seal):

- ``workloads.pending_secrets`` (new, JSON): create-time ``buildFiles`` /
  ``dockerSecretMounts`` are moved here out of ``spec``, converted to the documented form:
  ``data`` that is valid base64 is kept (Northflank's clients sent that form), anything else
  can only be the old "text itself" and is re-encoded as base64 with ``encoding: utf-8``;
  Shipyard's old ``encoding: base64`` marker becomes ``utf-8``. At start-up the application
  (``shipyard.builds.reseal``) merges them under the workload's sealed set (a value already
  stored there wins: it came from an explicit POST …/build-arguments), seals, and clears the
  column. Workloads that already have a sealed set get ``{}`` here, so the same pass rewrites
  it in the new sealed shape.
- Sealed values (``workloads.build_arguments_enc``, ``builds.overrides_enc``) cannot be opened
  here. Their old shape is a bare base64 string of the bytes Shipyard wrote then; the
  application reads such a value as ``{data: <same>, encoding: utf-8}``: the same bytes, so a
  queued or stored file builds exactly as before, now stated in the documented form.

On SQLite ``secure_delete`` is switched on for this connection so the clear values moved out
of ``spec`` do not linger in freed pages.

Revision ID: 0005_secret_files
Revises: 0004_sealed_bundle_url
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_secret_files"
down_revision = "0004_sealed_bundle_url"
branch_labels = None
depends_on = None

_SECRET_FIELDS = ("buildFiles", "dockerSecretMounts")


def _documented(value: Any) -> dict[str, str]:
    # Frozen here on purpose: a migration must not change when the application's code does.
    data = value.get("data", "") if isinstance(value, dict) else str(value)
    encoding = value.get("encoding") if isinstance(value, dict) else None
    data = data if isinstance(data, str) else str(data)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        data = base64.b64encode(data.encode("utf-8")).decode("ascii")
    if not isinstance(encoding, str) or not encoding or encoding == "base64":
        encoding = "utf-8"
    return {"data": data, "encoding": encoding}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete=ON")
    with op.batch_alter_table("workloads") as batch:
        batch.add_column(sa.Column("pending_secrets", sa.JSON(), nullable=True))
    workloads = sa.table(
        "workloads",
        sa.column("id", sa.Integer()),
        sa.column("spec", sa.JSON()),
        sa.column("build_arguments_enc", sa.LargeBinary()),
        sa.column("pending_secrets", sa.JSON()),
    )
    rows = bind.execute(
        sa.select(workloads.c.id, workloads.c.spec, workloads.c.build_arguments_enc)
    ).all()
    for workload_id, raw_spec, sealed in rows:
        spec = _load(raw_spec)
        pending: dict[str, dict[str, dict[str, str]]] = {}
        moved = False
        for field in _SECRET_FIELDS:
            if field in spec:
                given, moved = spec.pop(field), True
                if isinstance(given, dict) and given:
                    pending[field] = {str(k): _documented(v) for k, v in given.items()}
        if not pending and sealed is None and not moved:
            continue
        values: dict[str, Any] = {"pending_secrets": pending}
        if moved:
            values["spec"] = spec
        bind.execute(sa.update(workloads).where(workloads.c.id == workload_id).values(**values))
    if bind.dialect.name == "sqlite":
        # Per connection, and the app keeps this one: it would slow every later write.
        op.execute("PRAGMA secure_delete=OFF")


def _load(raw: Any) -> dict[str, Any]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value) if isinstance(value, dict) else {}


def downgrade() -> None:
    # Sealed sets stay sealed (no key here), in the new shape, which the previous release
    # cannot read: re-store build arguments after a downgrade. What the application has not
    # sealed yet goes back to ``spec``, where it was before.
    workloads = sa.table(
        "workloads",
        sa.column("id", sa.Integer()),
        sa.column("spec", sa.JSON()),
        sa.column("pending_secrets", sa.JSON()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(workloads.c.id, workloads.c.spec, workloads.c.pending_secrets).where(
            workloads.c.pending_secrets.is_not(None)
        )
    ).all()
    for workload_id, raw_spec, raw_pending in rows:
        pending = _load(raw_pending)
        if pending:
            spec = {**_load(raw_spec), **pending}
            bind.execute(
                sa.update(workloads).where(workloads.c.id == workload_id).values(spec=spec)
            )
    with op.batch_alter_table("workloads") as batch:
        batch.drop_column("pending_secrets")
