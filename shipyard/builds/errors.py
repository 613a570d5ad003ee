"""One exception tree for the domain; the API maps each class to an HTTP status in one table.

Every error carries ``slug``: Northflank's machine-readable error ``id`` (``project-not-found``,
…), which the official clients surface as ``error.id``."""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Base of every error the domain raises on purpose."""

    slug = "error"

    def __init__(self, message: str, details: Any = None, *, slug: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if slug is not None:
            self.slug = slug


class InvalidRequest(ShipyardError):
    """The caller sent something the contract's rules refuse."""

    slug = "invalid-request"


class NotFound(ShipyardError):
    """A project, service, job or build that does not exist (or is not visible)."""

    slug = "not-found"


class Conflict(ShipyardError):
    """The request clashes with existing state (e.g. a name already taken)."""

    slug = "conflict"


class Unauthenticated(ShipyardError):
    """No token, or a token we do not know."""

    slug = "unauthenticated"


class Forbidden(ShipyardError):
    """A known token that lacks the permission or is scoped to another project."""

    slug = "forbidden"


def not_found_slug(entity: str) -> str:
    """``project-not-found``, ``service-not-found``, ``job-not-found``, ``build-not-found``."""
    return f"{entity}-not-found"


class Upstream(ShipyardError):
    """A system Shipyard asked on the caller's behalf (a git remote) failed or refused."""

    slug = "upstream-error"


class TooManyRequests(ShipyardError):
    """A bounded resource of the caller's project (pending uploads, live log streams, …) is
    full (HTTP 429, ``Retry-After``): the message names the setting that bounds it."""

    slug = "rate-limited"

    def __init__(
        self, message: str, details: Any = None, *, retry_after_s: int = 5, slug: str | None = None
    ) -> None:
        super().__init__(message, details, slug=slug)
        self.retry_after_s = retry_after_s
