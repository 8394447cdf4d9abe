"""`tenslora estimates list|reset SHAPE`: the memory estimates learned from reported peaks.

Through the ``SchedulerPort`` (``cli.scheduler_port``): the API with ``--url`` and an admin
token, else the local database.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.scheduler_port import Token, Url, call_or_exit, open_scheduler

estimates_app = typer.Typer(
    help="Memory estimates learned from reported peaks, per job shape.", no_args_is_help=True
)


@estimates_app.command("list")
def list_(url: Url = None, token: Token = None) -> None:
    """Each job shape with what was learned about its memory, and its queued jobs.

    Columns, in MiB: the largest peak a job of the shape reported alone, the largest per-job share
    of a pack, the formula's estimate (what jobs get before any report).
    """
    with open_scheduler(url, token) as port:
        items = call_or_exit(port.estimates, url).items
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
    with open_scheduler(url, token) as port:
        item = call_or_exit(lambda: port.reset_estimate(shape), url)
    typer.echo(f"reset {item.shape}: {item.queued_jobs} queued jobs now estimated at "
               f"{_mb(item.formula_mb)} MiB (the formula)")


def _mb(value: int | None) -> str:
    return "-" if value is None else str(value)
