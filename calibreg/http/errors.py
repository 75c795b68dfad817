"""One error shape for every failure: ``{"error": {"code": ..., "message": ..., "details"?}}``.

Clients of a registry service branch on the status code and show the message; a single shape
(including FastAPI's own validation errors and Starlette's 404/405) means they never have to
parse two dialects. Domain errors map to status codes here, so routes just let them propagate.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from calibreg.errors import (
    AmbiguousLookupError,
    CalibregError,
    ConflictError,
    InputError,
    NotFoundError,
    NothingCertifiedError,
    SchemaError,
)
from calibreg.http.encoding import JSON_TYPE, NO_CACHE, jsonable, render_json

log = logging.getLogger("calibreg.http")

#: Domain error → HTTP status. Checked in order, so subclasses come before CalibregError.
STATUS_OF: tuple[tuple[type[CalibregError], int], ...] = (
    (NotFoundError, 404),
    (InputError, 422),
    (ConflictError, 409),
    # The service cannot answer until an operator migrates the database: not the client's fault.
    (SchemaError, 503),
    (CalibregError, 400),
)


def error_body(code: int, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """Return the JSON document of an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    code: int,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return an error response; never cached, since what is missing now may exist later."""
    merged = {"Cache-Control": NO_CACHE, **(headers or {})}
    return Response(
        render_json(error_body(code, message, details)),
        status_code=code,
        media_type=JSON_TYPE,
        headers=merged,
    )


def _status_of(err: CalibregError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(err, kind):
            return status
    return 400


async def _calibreg_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CalibregError)
    details = None
    if isinstance(exc, InputError):
        details = [{"loc": [exc.source, *([exc.field] if exc.field else [])], "msg": exc.reason}]
    elif isinstance(exc, AmbiguousLookupError):
        details = jsonable(exc.candidates)
    elif isinstance(exc, NothingCertifiedError) and exc.considered:
        # A lookup asked to explain itself: say which certifications were considered and why
        # none matched, rather than only that nothing did.
        details = jsonable(exc.considered)
    return error_response(_status_of(exc), str(exc), details)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = jsonable_encoder(exc.errors())
    parts = []
    for item in details:
        loc = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{loc}: {item.get('msg', 'invalid')}" if loc else item.get("msg", ""))
    message = "invalid request: " + "; ".join(parts) if parts else "invalid request"
    return error_response(422, message, details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such resource: {request.url.path}"
    return error_response(exc.status_code, message, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server log; the client gets no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of failure through :func:`error_response`."""
    app.add_exception_handler(CalibregError, _calibreg_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
