"""The one place exceptions become HTTP answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from protocol.models import ErrorOut, ValidationErrorOut
from scheduler.db import STORAGE_UNAVAILABLE
from scheduler.errors import SchedulerError, http_status

log = logging.getLogger(__name__)

#: What each error status means, for the OpenAPI schema (every route lists those it can answer).
ERROR_MEANINGS: dict[int, str] = {
    401: "no bearer token, or an unknown or revoked one",
    403: "the token's role (or ownership) does not allow this",
    404: "no such sweep, job or token",
    409: "the request disagrees with the stored state (a lease that is not the job's live one)",
    413: "the request body is larger than TENSLORA_MAX_BODY_MB",
    422: "the request is invalid; nothing was stored",
    503: "the database is unavailable; try again later",
}


def error_responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses``, with the body each really has; ``meanings``
    (``s404="no such sweep"``) say more than the general wording."""
    return {
        status: {
            "model": ValidationErrorOut if status == 422 else ErrorOut,
            "description": meanings.get(f"s{status}", ERROR_MEANINGS[status]),
        }
        for status in statuses
    }


async def scheduler_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchedulerError)
    status = http_status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": exc.detail}, status_code=status, headers=headers)


async def request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422, without echoing the input: a NaN in it cannot be written as JSON."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


async def storage_error(_request: Request, exc: Exception) -> JSONResponse:
    """A driver error that escaped ``session_scope``: logged, answered like any outage."""
    log.warning("storage error outside a session: %s", exc)
    return JSONResponse({"detail": STORAGE_UNAVAILABLE}, status_code=503)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """Starlette's 405 names only the first route of the path; ``Allow`` must list them all."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        if route.matches(request.scope)[0] != Match.NONE:
            allowed |= route.methods
    return JSONResponse({"detail": exc.detail}, status_code=405,
                        headers={"Allow": ", ".join(sorted(allowed))})


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
    app.add_exception_handler(SchedulerError, scheduler_error)
    app.add_exception_handler(SQLAlchemyError, storage_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
