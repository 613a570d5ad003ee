"""Northflank pagination: ``per_page`` (max 100), ``page``, opaque ``cursor``; responses carry
``{"hasNextPage", "cursor", "count"}`` and include ``cursor`` whenever there is a next page
(the JS client stops paging without it)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from shipyard.builds.errors import InvalidRequest

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50
MAX_PAGE = 1_000_000
# The furthest a cursor may point: what ``page`` allows. A forged ``{"o": 10**30}`` would
# otherwise reach the database as an OFFSET it cannot bind (a 500 instead of a 400).
MAX_OFFSET = MAX_PAGE * MAX_PER_PAGE
# The largest integer a path or query parameter may carry into SQL (a signed 64-bit column):
# past it SQLite and PostgreSQL refuse to bind it, a 500 instead of the caller's 400.
MAX_DB_INT = 2**63 - 1


@dataclass(frozen=True)
class PageRequest:
    per_page: int
    offset: int
    cursor: dict[str, Any] | None


def encode_cursor(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not valid", {"cursor": "invalid"}) from exc
    if not isinstance(value, dict):
        raise InvalidRequest("cursor is not valid", {"cursor": "invalid"})
    return value


def page_request(
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageRequest:
    decoded = decode_cursor(cursor) if cursor else None
    return PageRequest(per_page=per_page, offset=(page - 1) * per_page, cursor=decoded)


Page = Annotated[PageRequest, Depends(page_request)]


def offset_of(page: PageRequest) -> int:
    if page.cursor is None:
        return page.offset
    offset = page.cursor.get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidRequest("cursor is not valid", {"cursor": "invalid"})
    return offset


def pagination(rows_plus_one: int, per_page: int, next_cursor: str | None) -> dict[str, Any]:
    """``rows_plus_one``: rows fetched with limit per_page + 1 (one extra tells a next page)."""
    has_next = rows_plus_one > per_page
    body: dict[str, Any] = {"hasNextPage": has_next, "count": min(rows_plus_one, per_page)}
    if has_next and next_cursor is not None:
        body["cursor"] = next_cursor
    return body
