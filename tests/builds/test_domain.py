"""Small rules of the build domain: statuses, ids, ref names."""

from __future__ import annotations

import pytest

from shipyard.builds.ids import BUILD_ID_PATTERN, new_build_id, slugify
from shipyard.builds.refs import is_valid_branch, is_valid_sha
from shipyard.builds.status import CONCLUDED, BuildStatus, can_move


def test_status_enum_is_the_contracts() -> None:
    assert {s.value for s in BuildStatus} == {
        "QUEUED", "PENDING", "UNSCHEDULABLE", "STARTING", "CLONING", "BUILDING", "UPLOADING",
        "ABORTED", "FAILURE", "SUBMISSION_FAILURE", "SUCCESS", "CRASHED", "IN_PROGRESS",
    }  # fmt: skip
    assert {s.value for s in CONCLUDED} == {
        "SUCCESS",
        "FAILURE",
        "ABORTED",
        "CRASHED",
        "SUBMISSION_FAILURE",
    }


def test_status_moves() -> None:
    assert can_move(BuildStatus.QUEUED, BuildStatus.STARTING)
    assert can_move(BuildStatus.CLONING, BuildStatus.BUILDING)
    assert not can_move(BuildStatus.BUILDING, BuildStatus.CLONING)
    assert can_move(BuildStatus.BUILDING, BuildStatus.ABORTED)
    assert not can_move(BuildStatus.SUCCESS, BuildStatus.FAILURE)
    assert not can_move(BuildStatus.ABORTED, BuildStatus.BUILDING)


def test_build_ids() -> None:
    ids = {new_build_id() for _ in range(500)}
    assert all(BUILD_ID_PATTERN.match(i) for i in ids)
    assert len(ids) > 480


@pytest.mark.parametrize(
    ("name", "slug"),
    [("My App", "my-app"), ("  x__y  ", "x-y"), ("Ünïcode 2", "n-code-2"), ("!!!", "")],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("branch", ["main", "feature/x", "release-1.2", "a_b"])
def test_valid_branches(branch: str) -> None:
    assert is_valid_branch(branch)


@pytest.mark.parametrize(
    "branch",
    [
        "",
        "-x",
        "--upload-pack=x",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "/a",
        "a/",
        "a.",
        ".a",
        "a/.b",
        "a.lock",
        "a@{1}",
        "@",
        "a//b",
        "x\x00",
    ],
)
def test_invalid_branches(branch: str) -> None:
    assert not is_valid_branch(branch)


def test_sha() -> None:
    assert is_valid_sha("a" * 40)
    assert not is_valid_sha("A" * 40)
    assert not is_valid_sha("a" * 39)
