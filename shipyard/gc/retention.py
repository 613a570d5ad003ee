"""Which images a service keeps: pure functions of its builds, its policy and the time.

Rules (README, "Disk and garbage collection"):

- only successful builds with an image take part; failed, aborted and running builds have
  none, and builds whose image was already collected are done;
- the newest ``keep_last`` images are kept, and every image of a build younger than
  ``keep_days`` days;
- the image ``:latest`` points at (the newest successful build of the service's own branch)
  is kept whatever the policy says: deploys follow that tag;
- several builds can report one digest (whole-build reuse, identical rebuilds): a digest is
  deleted only when no kept build reports it. A collected build that shares a kept digest is
  not marked collected either: its ``registry.uri`` still pulls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Policy:
    keep_last: int
    keep_days: float

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ValueError("keep_last must be at least 1 (a service's newest image stays)")
        if self.keep_days < 0:
            raise ValueError("keep_days must not be negative")

    def overridden(self, override: Mapping[str, Any] | None) -> Policy:
        """A service's own ``retention`` (its create/PATCH body) over the operator's."""
        if not override:
            return self
        keep_last = override.get("keepLast")
        keep_days = override.get("keepDays")
        return Policy(
            keep_last=int(keep_last) if isinstance(keep_last, int) else self.keep_last,
            keep_days=float(keep_days) if isinstance(keep_days, int | float) else self.keep_days,
        )


@dataclass(frozen=True)
class ImageBuild:
    """What retention needs to know of one build."""

    id: str
    created_at: datetime
    success: bool
    digest: str | None
    branch: str | None = None
    collected: bool = False

    @property
    def has_image(self) -> bool:
        return self.success and self.digest is not None and not self.collected


@dataclass(frozen=True)
class Plan:
    """One service's verdict: builds that keep their image, builds whose image goes, and the
    digests that may be deleted (reported by no kept build)."""

    kept: tuple[ImageBuild, ...]
    collected: tuple[ImageBuild, ...]
    delete_digests: frozenset[str]

    @property
    def kept_digests(self) -> frozenset[str]:
        return frozenset(b.digest for b in self.kept if b.digest)


def plan(
    builds: Iterable[ImageBuild],
    policy: Policy,
    now: datetime,
    *,
    default_branch: str | None = None,
    protected_digests: Iterable[str] = (),
) -> Plan:
    """``protected_digests``: digests something outside the database still needs (a tag of a
    build the database does not know yet): never deleted, their builds stay."""
    candidates = sorted(
        (b for b in builds if b.has_image), key=lambda b: (b.created_at, b.id), reverse=True
    )
    cutoff = now - timedelta(days=policy.keep_days)
    keep_ids = {b.id for b in candidates[: policy.keep_last]}
    keep_ids |= {b.id for b in candidates if policy.keep_days and b.created_at >= cutoff}
    if default_branch is not None:
        latest = next((b for b in candidates if b.branch == default_branch), None)
        if latest is not None:
            keep_ids.add(latest.id)
    kept_digests = {b.digest for b in candidates if b.id in keep_ids and b.digest}
    kept_digests |= set(protected_digests)
    # A build whose digest something kept still reports keeps a pulling registry.uri.
    kept = tuple(b for b in candidates if b.id in keep_ids or b.digest in kept_digests)
    collected = tuple(b for b in candidates if b not in kept)
    delete = frozenset(b.digest for b in collected if b.digest) - kept_digests
    return Plan(kept=kept, collected=collected, delete_digests=delete)


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def collected_message(message: str | None, collected_at: datetime) -> str:
    """What a collected build's ``message`` says."""
    note = f"image removed by garbage collection on {collected_at.date().isoformat()}"
    return f"{message}; {note}" if message else note[0].upper() + note[1:]
