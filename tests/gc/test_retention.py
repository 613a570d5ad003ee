"""Which builds keep their image: the retention rules as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.gc.retention import ImageBuild, Policy, collected_message, format_bytes, plan
from shipyard.gc.stores import doomed_names

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def build(
    n: int,
    *,
    age_days: float | None = None,
    success: bool = True,
    digest: str | None = "",
    branch: str | None = "main",
    collected: bool = False,
) -> ImageBuild:
    """Build ``n`` is ``n`` hours old unless ``age_days`` says otherwise; its own digest."""
    age = timedelta(days=age_days) if age_days is not None else timedelta(hours=n)
    return ImageBuild(
        id=f"b{n}",
        created_at=NOW - age,
        success=success,
        digest=f"sha256:{n:064x}" if digest == "" else digest,
        branch=branch,
        collected=collected,
    )


def ids(builds: tuple[ImageBuild, ...]) -> list[str]:
    return [b.id for b in builds]


def test_keeps_the_newest_n_and_collects_the_rest() -> None:
    builds = [build(n) for n in range(1, 7)]
    got = plan(builds, Policy(keep_last=2, keep_days=0), NOW)
    assert ids(got.kept) == ["b1", "b2"]
    assert ids(got.collected) == ["b3", "b4", "b5", "b6"]
    assert got.delete_digests == {b.digest for b in builds[2:]}


def test_everything_younger_than_keep_days_stays() -> None:
    builds = [
        build(1, age_days=1),
        build(2, age_days=3),
        build(3, age_days=20),
        build(4, age_days=30),
    ]
    got = plan(builds, Policy(keep_last=1, keep_days=14), NOW)
    assert ids(got.kept) == ["b1", "b2"]
    assert ids(got.collected) == ["b3", "b4"]


def test_keep_last_counts_only_images() -> None:
    """Failed, running and already collected builds have no image: they neither use up the
    keep-last count nor get collected."""
    builds = [
        build(1, success=False, digest=None),
        build(2),
        build(3, digest=None),  # running: no digest yet
        build(4),
        build(5, collected=True),
        build(6),
    ]
    got = plan(builds, Policy(keep_last=2, keep_days=0), NOW)
    assert ids(got.kept) == ["b2", "b4"]
    assert ids(got.collected) == ["b6"]


def test_a_digest_a_kept_build_reports_is_never_deleted() -> None:
    """Reuse: the newest build reports the image of an old one; the old build keeps its image
    too (its registry.uri still pulls), and the digest is not deleted."""
    shared = "sha256:" + "a" * 64
    builds = [build(1, digest=shared), build(2), build(3, digest=shared), build(4)]
    got = plan(builds, Policy(keep_last=1, keep_days=0), NOW)
    assert ids(got.kept) == ["b1", "b3"]
    assert ids(got.collected) == ["b2", "b4"]
    assert shared not in got.delete_digests


def test_two_collected_builds_share_a_digest_deleted_once() -> None:
    shared = "sha256:" + "b" * 64
    builds = [build(1), build(2, digest=shared), build(3, digest=shared)]
    got = plan(builds, Policy(keep_last=1, keep_days=0), NOW)
    assert got.delete_digests == {shared}


def test_latest_of_the_default_branch_is_kept() -> None:
    """:latest follows the service's branch: its image stays even when other branches' newer
    builds fill keep-last."""
    builds = [build(1, branch="feature"), build(2, branch="feature"), build(3), build(4)]
    got = plan(builds, Policy(keep_last=1, keep_days=0), NOW, default_branch="main")
    assert ids(got.kept) == ["b1", "b3"]
    assert ids(got.collected) == ["b2", "b4"]


def test_protected_digests_stay() -> None:
    """A tag the database does not explain yet (a build that pushed but has not concluded)
    protects its digest."""
    builds = [build(1), build(2), build(3)]
    got = plan(
        builds, Policy(keep_last=1, keep_days=0), NOW, protected_digests={builds[2].digest or ""}
    )
    assert ids(got.collected) == ["b2"]
    assert got.delete_digests == {builds[1].digest}


def test_service_override() -> None:
    base = Policy(keep_last=10, keep_days=14)
    assert base.overridden({"keepLast": 3, "keepDays": 0}) == Policy(3, 0)
    assert base.overridden({"keepLast": 3}) == Policy(3, 14)
    assert base.overridden(None) == base
    with pytest.raises(ValueError):
        Policy(keep_last=0, keep_days=0)


def test_nothing_to_collect() -> None:
    got = plan([build(1), build(2)], Policy(keep_last=10, keep_days=14), NOW)
    assert got.collected == () and got.delete_digests == frozenset()


def test_collected_message_and_bytes() -> None:
    when = datetime(2026, 12, 4, tzinfo=UTC)
    assert collected_message("Image successfully built", when) == (
        "Image successfully built; image removed by garbage collection on 2026-12-04"
    )
    assert collected_message(None, when) == "Image removed by garbage collection on 2026-12-04"
    assert format_bytes(5 * 1024 * 1024) == "5.0 MiB"
    assert format_bytes(12) == "12 B"


def test_store_names_of_doomed_builds() -> None:
    names = [
        "127.0.0.1:5000/p/web:b1",
        "127.0.0.1:41234/p/web:b2",  # the registry's port changed since
        "127.0.0.1:5000/p/web:b3",
        "127.0.0.1:5000/p/api:b2",  # another service's build of the same id: not this one
        "localhost/shared/busybox:latest",
    ]
    assert doomed_names(names, "p", [("web", "b2"), ("web", "b1")]) == [
        "127.0.0.1:41234/p/web:b2",
        "127.0.0.1:5000/p/web:b1",
    ]


def test_bytes_only_the_collected_images_reference() -> None:
    from shipyard.gc.registry import Blobs, unique_bytes

    base, old, new = "sha256:base", "sha256:old", "sha256:new"
    doomed = [Blobs({base: 100, old: 5000}), Blobs({base: 100, old: 5000, "sha256:x": 7})]
    kept = [Blobs({base: 100, new: 5000})]
    assert unique_bytes(doomed, kept) == 5007  # shared layers count once, kept ones not at all
