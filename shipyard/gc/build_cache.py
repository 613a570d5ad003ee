"""Retention of the registry layer cache (``shipyard.pipeline.build_cache``): one manifest
per build step, tagged by its cache key, which no build owns. A collection deletes the
entries whose step was built longer ago than the service's ``keepDays`` (at least a day):
a later build that needs one again rebuilds that step and pushes it anew."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from shipyard.gc.registry import RegistryAdmin

MIN_AGE = timedelta(days=1)  # never an entry a build of today may be about to read
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def created_at(text: object) -> datetime | None:
    """An image config's ``created`` (RFC 3339, Go's nanoseconds), or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        return None


def prune(admin: RegistryAdmin, name: str, *, now: datetime, keep_days: float) -> int:
    """Delete the cache entries of repository ``name`` built before ``now - keep_days``;
    returns how many manifests went (their blobs go with the registry's garbage collection)."""
    cutoff = now - max(timedelta(days=keep_days), MIN_AGE)
    digests = {digest for tag in admin.tags(name) if (digest := admin.resolve(name, tag))}
    deleted = 0
    for digest in sorted(digests):
        created = created_at((admin.config(name, digest) or {}).get("created"))
        if created is not None and created < cutoff:
            admin.delete(name, digest)
            deleted += 1
    return deleted
