"""Pipeline failures. Each carries the human message that ends up on the build row."""

from __future__ import annotations

import re

_URL = re.compile(r"""\b[a-z][a-z0-9+.-]*://[^\s"']+""", re.IGNORECASE)
_MAX_CAUSE_CHARS = 300


class PipelineError(Exception):
    """A build step failed; ``message`` is shown to the user as the build's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceError(PipelineError):
    """Fetching the source failed (unknown commit, unreachable repo, bad bundle)."""


class BuildFailed(PipelineError):
    """buildah could not build the image (user's Dockerfile or RUN step failed)."""


class PushFailed(PipelineError):
    """The image was built but could not be pushed."""


class Cancelled(Exception):
    """The build was aborted while a step ran; its process group was stopped."""


class TimedOut(PipelineError):
    """A step ran past its time limit; its process group was stopped."""


class Stalled(TimedOut):
    """A step showed no progress (no output, no I/O) for its stall limit; stopped."""


def short_cause(text: str) -> str:
    """An error text fit for a build's message: no URLs (upload URLs carry the registry's
    ``_state`` token, others credentials or signed queries), at most a few hundred
    characters."""
    text = _URL.sub("<url>", text)
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[: _MAX_CAUSE_CHARS - 1] + "…"
    return text
