"""Migration 0004 on rows written before it: URLs of concluded builds redacted, unkeyed
fingerprints erased, queued builds still fetchable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from shipyard.store.db import MIGRATIONS, make_engine


def upgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_0004_redacts_concluded_bundle_urls_and_erases_unkeyed_fingerprints(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0003")
    engine = make_engine(url)
    now = datetime.now(UTC)
    raw = "https://u:pw@h/a.tgz?X-Amz-Signature=s1g"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO projects (id, name, spec, created_at) VALUES ('p', 'p', '{}', :now)"),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO workloads (id, project_id, entity, slug, kind, name,"
                " dockerfile_path, docker_work_dir, use_cache, path_ignore_rules, is_allow_list,"
                " spec, created_at) VALUES (1, 'p', 'service', 's', 'build', 's', '/Dockerfile',"
                " '/', 1, '[]', 0, '{}', :now)"
            ),
            {"now": now},
        )
        for build_id, concluded, bundle in (
            ("done", True, raw),
            ("queued", False, raw),
            ("git", True, None),
        ):
            conn.execute(
                text(
                    "INSERT INTO builds (id, workload_id, status, concluded, success, source_kind,"
                    " bundle_url, request_fingerprint, created_at, attempt, abort_requested)"
                    " VALUES (:id, 1, 'QUEUED', :concluded, 0, 'bundle', :bundle, :fp, :now, 0, 0)"
                ),
                {
                    "id": build_id,
                    "concluded": concluded,
                    "bundle": bundle,
                    "fp": "ab" * 32,
                    "now": now,
                },
            )
    engine.dispose()
    upgrade(url, "head")
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = dict(
            conn.execute(text("SELECT id, bundle_url FROM builds")).all()  # type: ignore[arg-type]
        )
        fingerprints = conn.execute(text("SELECT request_fingerprint FROM builds")).scalars().all()
    engine.dispose()
    assert rows == {"done": "https://***@h/a.tgz?***", "queued": raw, "git": None}
    assert fingerprints == [None, None, None]
