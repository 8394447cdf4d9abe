"""The one place exceptions become HTTP answers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from scheduler.db import STORAGE_UNAVAILABLE
from scheduler.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedulerError,
    StorageUnavailable,
    TooLarge,
    Unauthenticated,
)

log = logging.getLogger(__name__)

STATUS: dict[type[SchedulerError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unauthenticated: 401,
    Forbidden: 403,
    StorageUnavailable: 503,
}


async def scheduler_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchedulerError)
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
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


def install(app: FastAPI) -> None:
    app.add_exception_handler(SchedulerError, scheduler_error)
    app.add_exception_handler(SQLAlchemyError, storage_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
