"""Migrations on rows written before them. 0004: URLs of concluded builds redacted, unkeyed
fingerprints erased, queued builds still fetchable. 0005: create-time secret files moved out
of the clear spec in Northflank's form and sealed at app start."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from shipyard.builds.reseal import reseal
from shipyard.builds.secret_files import SecretFile
from shipyard.builds.service import stored_secrets
from shipyard.store import workloads as workload_store
from shipyard.store.crypto import SecretBox
from shipyard.store.db import MIGRATIONS, make_engine, make_sessionmaker
from tests.helpers.databases import Database
from tests.helpers.pg import scratch_database


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


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_0005_moves_create_time_secrets_out_of_spec_and_the_app_seals_them(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0004_sealed_bundle_url")
    box = SecretBox("migration-test-key")
    now = datetime.now(UTC)
    seed = "VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU="
    old_spec = {
        "vcsData": {"projectUrl": "file:///r"},
        "deployment": {"instances": 1},
        "buildFiles": {
            "/seed": {"data": seed, "encoding": "utf-8"},  # Northflank's form: kept
            "/raw": {"data": "raw-text-secret body", "encoding": "utf-8"},  # old meaning
            "/bin": {"data": _b64(b"\x00\x01"), "encoding": "base64"},  # old marker
            "/both": {"data": _b64(b"from create"), "encoding": "utf-8"},
        },
        "dockerSecretMounts": {"tok": {"data": "mount-raw-secret"}},
    }
    # Sealed before 0005: files are bare base64 strings of the bytes Shipyard wrote then.
    old_sealed = box.seal(
        {
            "buildArguments": {"NODE_ENV": "prod"},
            "buildFiles": {"/both": _b64(b"from build-arguments"), "/stored": _b64(b"as text")},
            "dockerSecretMounts": {},
        },
        "workload:2",
    )
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO projects (id, name, spec, created_at) VALUES ('p', 'p', '{}', :now)"),
            {"now": now},
        )
        for wid, slug, spec, sealed in (
            (1, "plain", {"vcsData": {"projectUrl": "file:///r"}}, None),
            (2, "secret", old_spec, old_sealed),
        ):
            conn.execute(
                text(
                    "INSERT INTO workloads (id, project_id, entity, slug, kind, name,"
                    " dockerfile_path, docker_work_dir, use_cache, path_ignore_rules,"
                    " is_allow_list, spec, build_arguments_enc, created_at) VALUES (:id, 'p',"
                    " 'service', :slug, 'combined', :slug, '/Dockerfile', '/', 1, '[]', 0,"
                    " :spec, :sealed, :now)"
                ),
                {"id": wid, "slug": slug, "spec": json.dumps(spec), "sealed": sealed, "now": now},
            )
    engine.dispose()
    upgrade(url, "head")

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {
            r[0]: (json.loads(r[1]), None if r[2] is None else json.loads(r[2]))
            for r in conn.execute(text("SELECT slug, spec, pending_secrets FROM workloads"))
        }
    assert rows["plain"] == ({"vcsData": {"projectUrl": "file:///r"}}, None)
    spec, pending = rows["secret"]
    assert spec == {"vcsData": {"projectUrl": "file:///r"}, "deployment": {"instances": 1}}
    assert pending == {
        "buildFiles": {
            "/seed": {"data": seed, "encoding": "utf-8"},
            "/raw": {"data": _b64(b"raw-text-secret body"), "encoding": "utf-8"},
            "/bin": {"data": _b64(b"\x00\x01"), "encoding": "utf-8"},
            "/both": {"data": _b64(b"from create"), "encoding": "utf-8"},
        },
        "dockerSecretMounts": {"tok": {"data": _b64(b"mount-raw-secret"), "encoding": "utf-8"}},
    }

    # App start: the reseal pass seals them under the stored set, once.
    sessions = make_sessionmaker(engine)
    assert reseal(sessions, box) == 1
    assert reseal(sessions, box) == 0
    with sessions() as session:
        workload = workload_store.get(session, "p", "service", "secret")
        assert workload.pending_secrets is None
        stored = stored_secrets(box, workload)
        raw_sealed = box.open(workload.build_arguments_enc or b"", "workload:2")
    assert stored.build_arguments == {"NODE_ENV": "prod"}
    assert stored.build_files == {
        "/seed": SecretFile(b"This is an example with a templated ${NODE_ENV} variable"),
        "/raw": SecretFile(b"raw-text-secret body"),
        "/bin": SecretFile(b"\x00\x01"),
        "/both": SecretFile(b"from build-arguments"),  # the explicit stored value wins
        "/stored": SecretFile(b"as text"),  # old sealed value: the same bytes, utf-8
    }
    assert stored.secret_mounts == {"tok": SecretFile(b"mount-raw-secret")}
    # Rewritten in the documented shape.
    assert raw_sealed["buildFiles"]["/stored"] == {"data": _b64(b"as text"), "encoding": "utf-8"}
    engine.dispose()
    db = b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite*"))
    for secret in (b"raw-text-secret body", b"mount-raw-secret", seed.encode()):
        assert secret not in db and base64.b64encode(secret) not in db, secret


def test_0009_adds_dockerfile_contents_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0008_build_metrics")
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(builds)"))]
    assert "dockerfile_contents" not in columns
    engine.dispose()
    upgrade(url, "0009_dockerfile_contents")
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(builds)"))]
    assert "dockerfile_contents" in columns
    engine.dispose()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008_build_metrics")
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(builds)"))]
    engine.dispose()
    assert "dockerfile_contents" not in columns


def test_0011_adds_image_collected_at_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0009_dockerfile_contents")
    upgrade(url, "0011_gc")
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(builds)"))]
    assert "image_collected_at" in columns
    engine.dispose()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009_dockerfile_contents")
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(builds)"))]
    engine.dispose()
    assert "image_collected_at" not in columns


def test_0012_adds_sealed_pull_credentials_to_projects_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0012_pull_credentials")
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(projects)"))]
    assert "registry_pull_credentials_enc" in columns
    engine.dispose()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011_gc")
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(projects)"))]
    engine.dispose()
    assert "registry_pull_credentials_enc" not in columns


@pytest.fixture
def empty_database(database: Database, tmp_path: Path) -> Iterator[str]:
    """A URL of a database no migration has touched, on each backend (not the session's
    shared PostgreSQL database: a failing downgrade must not break the tests after it)."""
    if database.backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    with scratch_database("shipyard_migrate") as url:
        yield url


def _schema(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        found = inspect(engine)
        return {
            table: (
                sorted(
                    (c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)
                ),
                sorted(str(i["name"]) for i in found.get_indexes(table)),
            )
            for table in found.get_table_names()
        }
    finally:
        engine.dispose()


def _run(url: str, step: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, revision)
    finally:
        engine.dispose()


def test_every_migration_goes_up_down_and_up_again(empty_database: str) -> None:
    _run(empty_database, "upgrade", "head")
    head = _schema(empty_database)
    assert {"builds", "build_logs", "projects", "workloads"} <= set(head)
    _run(empty_database, "downgrade", "base")
    assert set(_schema(empty_database)) <= {"alembic_version"}
    _run(empty_database, "upgrade", "head")
    assert _schema(empty_database) == head
