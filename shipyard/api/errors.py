"""One table maps domain errors to HTTP; every error leaves in Northflank's error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.builds.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ShipyardError,
    TooManyRequests,
    Unauthenticated,
    Upstream,
)
from shipyard.store.write_gate import WriteGateTimeout
from shipyard.uploads.store import PayloadTooLarge

log = logging.getLogger(__name__)

STATUS_OF: dict[type[ShipyardError], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    TooManyRequests: 429,
    Upstream: 502,
}


# Slugs of errors raised by the framework itself (routing, body limits), by HTTP status.
_HTTP_SLUGS = {
    400: "invalid-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    429: "rate-limited",
}


def error_body(
    status: int, message: str, details: Any = None, slug: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "message": message}
    if slug is not None:
        error["id"] = slug
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int, message: str, details: Any = None, slug: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, details, slug), status_code=status)


def _field_path(loc: tuple[Any, ...]) -> str:
    # Drop "body" and pydantic's union tags so the message names the user's field.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    parts = [
        p
        for p in parts
        if not p.startswith("tagged-union") and p not in ("git", "bundle", "upload")
    ]
    return ".".join(parts) or "body"


def validation_details(exc: RequestValidationError | ValidationError) -> tuple[str, dict[str, str]]:
    details: dict[str, str] = {}
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON", {"body": str(err.get("msg", "invalid JSON"))}
        path = _field_path(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        details.setdefault(path, msg)
    first = next(iter(details.items()), ("body", "invalid"))
    return f"{first[0]}: {first[1]}", details


def install(app: FastAPI) -> None:
    @app.exception_handler(ShipyardError)
    async def _domain(_: Request, exc: ShipyardError) -> JSONResponse:
        status = next((code for cls, code in STATUS_OF.items() if isinstance(exc, cls)), 400)
        response = error_response(status, exc.message, exc.details, exc.slug)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = validation_details(exc)
        return error_response(400, message, details, "invalid-request")

    @app.exception_handler(ValidationError)
    async def _model(_: Request, exc: ValidationError) -> JSONResponse:
        # A merged PATCH body re-validated in a handler: the caller's 400, like a body's.
        message, details = validation_details(exc)
        return error_response(400, message, details, "invalid-request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        slug = _HTTP_SLUGS.get(exc.status_code, "error")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
            slug = "endpoint-not-found"
        if exc.status_code == 405:
            message = "method not allowed"
        return error_response(exc.status_code, message, slug=slug)

    @app.exception_handler(WriteGateTimeout)
    @app.exception_handler(PoolTimeout)
    async def _database_busy(_: Request, exc: Exception) -> JSONResponse:
        # Bounded waits for the database (issue 11): an overloaded server says so and when
        # to come back instead of a bare 500.
        log.warning("database busy: %s", exc)
        response = error_response(503, "the database is busy; retry shortly", slug="unavailable")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(DataError)
    async def _bad_data(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot store (PostgreSQL: a NUL in text, a number out of
        # range): what the caller sent, not a server fault. The driver's text stays in the log.
        log.warning("value refused by the database: %s", exc.orig)
        nul = "NUL" in str(exc.orig)
        message = (
            "a text value contains a NUL character (\\u0000), which cannot be stored"
            if nul
            else "a value is out of range or invalid for storage"
        )
        return error_response(400, message, slug="invalid-request")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error", slug="internal-error")
