"""bundleUrl stored sealed; request fingerprints keyed.

- ``builds.bundle_url_enc``: the real bundle URL, AES-GCM encrypted; ``bundle_url`` keeps
  the redacted form. Concluded builds no longer need their URL, so their stored one is
  redacted here. Builds not yet concluded keep it in ``bundle_url`` (the key to seal it is
  not available to a migration) and are fetched from there; the API redacts it anyway.
- ``request_fingerprint`` was an unkeyed sha256 of request bodies that hold secrets. The
  old digests are erased: a replay of an Idempotency-Key from before the upgrade now gets a
  409 (the new fingerprints are HMACs and could never have matched them).

Revision ID: 0004_sealed_bundle_url
Revises: 0003
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0004_sealed_bundle_url"
down_revision = "0003"
branch_labels = None
depends_on = None

_MASK = "***"


def _redact(url: str) -> str:
    # A frozen copy of shipyard.builds.bundle_url.redact: a migration must not change when
    # the application's code does.
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return _MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_MASK}@{netloc.rpartition('@')[2]}"
    return urlunsplit(
        parts._replace(
            netloc=netloc,
            query=_MASK if parts.query else "",
            fragment=_MASK if parts.fragment else "",
        )
    )


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("bundle_url_enc", sa.LargeBinary(), nullable=True))
    builds = sa.table(
        "builds",
        sa.column("id", sa.String()),
        sa.column("bundle_url", sa.Text()),
        sa.column("concluded", sa.Boolean()),
        sa.column("request_fingerprint", sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(builds.c.id, builds.c.bundle_url).where(
            builds.c.concluded.is_(True), builds.c.bundle_url.is_not(None)
        )
    ).all()
    for build_id, url in rows:
        shown = _redact(url)
        if shown != url:
            bind.execute(sa.update(builds).where(builds.c.id == build_id).values(bundle_url=shown))
    bind.execute(sa.update(builds).values(request_fingerprint=None))


def downgrade() -> None:
    # Sealed URLs cannot be put back in clear without the key: downgraded rows keep the
    # redacted form (only builds not yet started would need the real one).
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("bundle_url_enc")
