"""The build status enum of Northflank's API and the rules for moving between statuses."""

from __future__ import annotations

from enum import StrEnum


class BuildStatus(StrEnum):
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    UNSCHEDULABLE = "UNSCHEDULABLE"
    STARTING = "STARTING"
    CLONING = "CLONING"
    BUILDING = "BUILDING"
    UPLOADING = "UPLOADING"
    ABORTED = "ABORTED"
    FAILURE = "FAILURE"
    SUBMISSION_FAILURE = "SUBMISSION_FAILURE"
    SUCCESS = "SUCCESS"
    CRASHED = "CRASHED"
    IN_PROGRESS = "IN_PROGRESS"

    @property
    def concluded(self) -> bool:
        return self in CONCLUDED

    @property
    def running(self) -> bool:
        return self in RUNNING


CONCLUDED = frozenset(
    {
        BuildStatus.SUCCESS,
        BuildStatus.FAILURE,
        BuildStatus.ABORTED,
        BuildStatus.CRASHED,
        BuildStatus.SUBMISSION_FAILURE,
    }
)

# Statuses a worker holds a build in after claiming it; the lease applies to these.
RUNNING = frozenset(
    {
        BuildStatus.STARTING,
        BuildStatus.CLONING,
        BuildStatus.BUILDING,
        BuildStatus.UPLOADING,
        BuildStatus.IN_PROGRESS,
    }
)

WAITING = frozenset({BuildStatus.QUEUED, BuildStatus.PENDING, BuildStatus.UNSCHEDULABLE})

# The pipeline's stages in order; a build only moves forward through them.
STAGES: tuple[BuildStatus, ...] = (
    BuildStatus.QUEUED,
    BuildStatus.STARTING,
    BuildStatus.CLONING,
    BuildStatus.BUILDING,
    BuildStatus.UPLOADING,
)


def can_move(current: BuildStatus, new: BuildStatus) -> bool:
    """Whether a build may go from ``current`` to ``new``."""
    if current.concluded:
        return False
    if new.concluded:
        return True
    if current in STAGES and new in STAGES:
        return STAGES.index(new) > STAGES.index(current)
    return current in WAITING and new in RUNNING
