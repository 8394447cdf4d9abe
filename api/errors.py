"""The one place domain exceptions become HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scheduler.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedulerError,
    StorageUnavailable,
    Unauthenticated,
)

STATUS: dict[type[SchedulerError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    StorageUnavailable: 503,
}


async def scheduler_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchedulerError)
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": exc.detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SchedulerError, scheduler_error)
