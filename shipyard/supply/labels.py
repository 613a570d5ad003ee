"""OCI annotations of the image's origin, and the time its digest is pinned to.

``org.opencontainers.image.created`` and buildah's ``--timestamp`` are the same instant: the
commit's committer time for git builds, so two cold builds of one commit with the same
settings give the same digest. A bundle or an upload has no commit: its time is the newest
modification time recorded in the archive (the same archive gives the same digest)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shipyard.builds.repo_url import split_credentials

SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
CREATED = "org.opencontainers.image.created"

# A walk for the newest mtime stops here: the extraction already capped the entries.
_MAX_WALK = 200_000


@dataclass(frozen=True)
class Origin:
    """Where an image's source came from, as far as it may be shown."""

    source: str | None  # a URL without credentials, query or fragment; None for uploads
    revision: str | None  # the commit sha
    created: int  # unix seconds: the image's created time and every file's mtime in it

    def labels(self) -> dict[str, str]:
        found = {CREATED: rfc3339(self.created)}
        if self.source:
            found[SOURCE] = self.source
        if self.revision:
            found[REVISION] = self.revision
        return found


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_url(url: str | None) -> str | None:
    """``url`` without userinfo (a token), query or fragment (presigned signatures)."""
    if not url:
        return None
    public, _ = split_credentials(url)
    try:
        parts = urlsplit(public)
    except ValueError:
        return None
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment="")) or None


def newest_mtime(root: Path) -> int:
    """The newest modification time (whole seconds) of the files under ``root`` (not
    directories: extraction touches them), not following links; never in the future, never
    negative."""
    newest = 0
    seen = 0
    for directory, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            seen += 1
            if seen > _MAX_WALK:
                break
            try:
                newest = max(newest, int(os.lstat(os.path.join(directory, name)).st_mtime))
            except OSError:
                continue
    return max(0, min(newest, int(time.time())))
