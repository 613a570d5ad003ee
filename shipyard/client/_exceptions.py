"""The one exception type of the SDK, and its two refinements."""

from __future__ import annotations

from typing import Any

__all__ = ["ShipyardConnectionError", "ShipyardError", "ShipyardTimeoutError"]


class ShipyardError(Exception):
    """Anything the SDK raises about the API: an error answer (``status`` is its HTTP status,
    ``message`` and ``details`` come from the ``{"error": {…}}`` body), an answer that is not
    the API's shape, or (subclasses, ``status`` 0) a transport failure or a ``wait`` timeout."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(status, message, details)
        self.status = status
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status!r}, {self.message!r}, {self.details!r})"


class ShipyardConnectionError(ShipyardError):
    """The server could not be reached or the connection broke (``status`` 0; ``details`` is
    the underlying ``httpx`` exception, also chained as ``__cause__``)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(0, message, details)


class ShipyardTimeoutError(ShipyardError):
    """``wait`` gave up before the build concluded (``status`` 0; ``details`` is the last
    :class:`~shipyard.client.Build` seen)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(0, message, details)
