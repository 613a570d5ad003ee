from __future__ import annotations

import os
from pathlib import Path

from shipyard.supply.labels import Origin, newest_mtime, public_url


def test_public_url_drops_credentials_query_and_fragment() -> None:
    assert (
        public_url("https://user:tok@git.example.com/a/b.git") == "https://git.example.com/a/b.git"
    )
    assert public_url("https://tok@x.io/b.tgz?X-Amz-Signature=s#f") == "https://x.io/b.tgz"
    assert public_url("ssh://git@host/repo.git") == "ssh://host/repo.git"
    assert public_url(None) is None


def test_labels_name_source_revision_and_created() -> None:
    labels = Origin("https://h/r.git", "a" * 40, 1_700_000_000).labels()
    assert labels == {
        "org.opencontainers.image.source": "https://h/r.git",
        "org.opencontainers.image.revision": "a" * 40,
        "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
    }
    # An upload has neither a public source nor a commit.
    assert Origin(None, None, 0).labels() == {
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z"
    }


def test_newest_mtime_reads_files_only_and_never_the_future(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    old, new = tmp_path / "d" / "old", tmp_path / "new"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    os.utime(tmp_path / "d", (9000, 9000))  # directories do not count
    assert newest_mtime(tmp_path) == 2000
    os.utime(new, (2**40, 2**40))
    assert newest_mtime(tmp_path) < 2**40
