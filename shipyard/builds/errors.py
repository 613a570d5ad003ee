"""One exception tree for the domain; the API maps each class to an HTTP status in one table."""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(ShipyardError):
    """The caller sent something the contract's rules refuse."""


class NotFound(ShipyardError):
    """A project, service, job or build that does not exist (or is not visible)."""


class Conflict(ShipyardError):
    """The request clashes with existing state (e.g. a name already taken)."""


class Unauthenticated(ShipyardError):
    """No token, or a token we do not know."""


class Forbidden(ShipyardError):
    """A known token that lacks the permission or is scoped to another project."""
