"""Domain exceptions, and the one table of the HTTP status each stands for (``HTTP_STATUS``):
``api.errors`` answers with it and ``cli.local_scheduler`` raises the protocol error of the same
status, so a caller sees the same error over HTTP and in process."""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the service reports to a caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(SchedulerError):
    """The request is well-formed JSON but says something the service cannot accept (422)."""


class NotFound(SchedulerError):
    """The named sweep, job or token does not exist (404)."""


class Conflict(SchedulerError):
    """The request disagrees with the stored state: a stale lease, a finished job (409)."""


class TooLarge(SchedulerError):
    """An upload over the size limit its setting names (413)."""


class Unauthenticated(SchedulerError):
    """No token, or a token the service does not know (401)."""


class Forbidden(SchedulerError):
    """A valid token whose role may not do this (403)."""


class StorageUnavailable(SchedulerError):
    """The database could not be reached or stayed locked (503)."""


HTTP_STATUS: dict[type[SchedulerError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unauthenticated: 401,
    Forbidden: 403,
    StorageUnavailable: 503,
}


def http_status(error: SchedulerError) -> int:
    """The status of ``error``'s kind (a subclass answers as its base); 400 for any other."""
    return next((code for kind, code in HTTP_STATUS.items() if isinstance(error, kind)), 400)
