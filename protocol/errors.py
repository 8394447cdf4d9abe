"""The one error hierarchy of ``protocol.client``: what went wrong with a call to the API.

``ApiUnavailable``: no answer (or 5xx) for the whole retry window; ``LeaseLost``: 409, the lease
is no longer the job's live one; ``ApiRejected``: any other 4xx, which retrying will not mend.
"""

from __future__ import annotations


class ApiError(RuntimeError):
    """A call to the API failed; ``status_code`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail or message


class ApiUnavailable(ApiError):
    """The API did not answer (or answered 5xx) for the whole retry window."""


class ApiRejected(ApiError):
    """A 4xx (bad token, wrong role, unknown job, invalid sweep): retrying will not help."""

    def __init__(self, status_code: int, detail: str, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(f"HTTP {status_code}: {prefix}{detail}", status_code, detail)


class LeaseLost(ApiRejected):
    """409: the job was reaped, cancelled or handed to another worker; stop working on it."""


def rejection(status_code: int, detail: str, where: str = "") -> ApiRejected:
    """The error of a 4xx answer: ``LeaseLost`` for 409, ``ApiRejected`` for any other."""
    kind = LeaseLost if status_code == 409 else ApiRejected
    return kind(status_code, detail, where)
