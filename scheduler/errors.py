"""Domain exceptions. ``api.errors`` maps each to one HTTP status; nothing else does."""

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
