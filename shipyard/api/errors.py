"""One table maps domain errors to HTTP; every error leaves in Northflank's error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.builds.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ShipyardError,
    Unauthenticated,
)

log = logging.getLogger(__name__)

STATUS_OF: dict[type[ShipyardError], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
}


def error_body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(status: int, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, details), status_code=status)


def _field_path(loc: tuple[Any, ...]) -> str:
    # Drop "body" and pydantic's union tags so the message names the user's field.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    parts = [p for p in parts if not p.startswith("tagged-union") and p not in ("git", "bundle")]
    return ".".join(parts) or "body"


def validation_details(exc: RequestValidationError) -> tuple[str, dict[str, str]]:
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
        return error_response(status, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = validation_details(exc)
        return error_response(400, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        if exc.status_code == 405:
            message = "method not allowed"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error")
