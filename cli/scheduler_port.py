"""Where the CLI's commands reach the scheduler: the ``--url`` / ``--token`` options, the one
factory that opens a ``SchedulerPort`` for them, and how a refusal ends a command.

With ``--url`` (or TENSLORA_API_URL) the port is the API's client, with a bearer token; without,
it is the scheduler in this process on TENSLORA_DATABASE_URL. A command never asks which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from protocol.port import SchedulerPort

T = TypeVar("T")

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="TENSLORA_API_URL", help="server URL; default: the local DB"),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="TENSLORA_TOKEN", help="bearer token for --url")
]


def open_scheduler(
    url: str | None, token: str | None, *, database_url: str | None = None
) -> SchedulerPort:
    """The API at ``url`` (one attempt a call), else the database in this process:
    ``database_url``, default TENSLORA_DATABASE_URL."""
    if url:
        from protocol.client import ApiClient

        return ApiClient(url, token, timeout_s=60, retry_for_s=0)
    from cli.local_scheduler import LocalScheduler

    return LocalScheduler(database_url)


def call_or_exit(operation: Callable[[], T], url: str | None) -> T:
    """``operation()``; a refusal prints the scheduler's reason and exits 2 for an unknown
    sweep or job or invalid input (404, 422), 1 for anything else (no answer included)."""
    from protocol.errors import ApiError

    try:
        return operation()
    except ApiError as exc:
        reason = exc.detail if exc.status_code is not None else (
            f"cannot reach {(url or '').rstrip('/')}: {exc}"
        )
        typer.echo(f"error: {reason}", err=True)
        raise typer.Exit(2 if exc.status_code in (404, 422) else 1) from None
