"""Every test here that makes an app runs on SQLite and on PostgreSQL
(tests/helpers/databases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.settings import Settings
from tests.helpers.databases import Database


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    return database.settings(tmp_path)
