"""A server-sent events decoder fed line by line (the same for the sync and async clients)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Per the HTML spec: ``field: value`` lines, ``data`` lines joined by ``\\n``, a blank
    line dispatches, ``:`` starts a comment, ``event`` defaults to ``message``. Unlike the
    spec, a named event without ``data`` is dispatched too (an ``end`` must not be lost)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        """Feed one line (without its end of line); returns an event on a blank line."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data and not self._event:
            return None
        event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data = "", []
        return event
