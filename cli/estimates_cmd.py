"""`tenslora estimates list|reset SHAPE`: the memory estimates learned from reported peaks.

With ``--url`` (or TENSLORA_API_URL) over HTTP with an admin token; without, on
TENSLORA_DATABASE_URL through the same ``scheduler.memory`` functions the server calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cli.sweep_cmd import Token, Url

if TYPE_CHECKING:
    from protocol.client import ApiClient
    from protocol.models import EstimateOut

estimates_app = typer.Typer(
    help="Memory estimates learned from reported peaks, per job shape.", no_args_is_help=True
)
T = TypeVar("T")


@estimates_app.command("list")
def list_(url: Url = None, token: Token = None) -> None:
    """Each job shape with what was learned about its memory, and its queued jobs.

    Columns, in MiB: the largest peak a job of the shape reported alone, the largest per-job share
    of a pack, the formula's estimate (what jobs get before any report).
    """
    def local(session: Any) -> list[EstimateOut]:
        from protocol.models import EstimateOut
        from scheduler import memory

        return [EstimateOut.model_validate(view) for view in memory.list_estimates(session)]

    items = _call(url, token, remote=lambda api: api.estimates().items, local=local)
    if not items:
        typer.echo("no learned estimates yet: every job has the formula's")
        return
    width = max(len("shape"), *(len(item.shape) for item in items))
    typer.echo(
        f"{'shape':<{width}}  {'peak':>8} {'share':>8} {'formula':>8} {'queued':>7}  updated"
    )
    for item in items:
        updated = item.updated_at.strftime("%Y-%m-%d %H:%M") if item.updated_at else "-"
        typer.echo(
            f"{item.shape:<{width}}  {_mb(item.peak_memory_mb):>8} {_mb(item.pack_share_mb):>8} "
            f"{_mb(item.formula_mb):>8} {item.queued_jobs:>7}  {updated}"
        )


@estimates_app.command("reset")
def reset(
    shape: Annotated[str, typer.Argument(metavar="SHAPE", help="a shape as `list` shows it")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Forget what was learned about a shape's memory (its peak and pack share).

    Its queued jobs go back to the formula's estimate; the next reports of the shape teach it
    again.
    """
    def local(session: Any) -> EstimateOut:
        from protocol.models import EstimateOut
        from scheduler import memory

        return EstimateOut.model_validate(memory.reset_estimate(session, shape))

    item = _call(url, token, remote=lambda api: api.reset_estimate(shape), local=local)
    typer.echo(f"reset {item.shape}: {item.queued_jobs} queued jobs now estimated at "
               f"{_mb(item.formula_mb)} MiB (the formula)")


def _mb(value: int | None) -> str:
    return "-" if value is None else str(value)


def _call(
    url: str | None,
    token: str | None,
    *,
    remote: Callable[[ApiClient], T],
    local: Callable[[Any], T],
) -> T:
    """``remote`` on the API at ``url``, else ``local`` in a session on the local database; a
    refusal exits 2 (1 when the API does not answer) with its reason on stderr."""
    if not url:
        from cli.admin_cmd import _admin_session

        with _admin_session() as session:
            return local(session)
    from protocol.client import ApiClient
    from protocol.errors import ApiError

    try:
        with ApiClient(url, token, timeout_s=60, retry_for_s=0) as api:
            return remote(api)
    except ApiError as exc:
        if exc.status_code is None or exc.status_code >= 500:
            typer.echo(f"error: cannot reach {url}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None

