"""Shared field types and the envelope ``{"data": …}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

Sha = Annotated[str, StringConstraints(min_length=40, max_length=40, pattern=r"^[0-9a-f]{40}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Create bodies keep fields Shipyard does not act on (stored, echoed back)."""

    model_config = ConfigDict(extra="allow")


def iso_ms(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Northflank writes timestamps."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def envelope(data: Any, pagination: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return body
