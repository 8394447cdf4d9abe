"""`tenslora sweep submit|list|show|cancel` and `tenslora results`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.scheduler_port import Token, Url, call_or_exit, open_scheduler

if TYPE_CHECKING:
    from protocol.models import SweepOut

sweep_app = typer.Typer(help="Submit and follow sweeps.", no_args_is_help=True)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def read_sweep_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping in the API's sweep schema; ``name`` defaults to the file stem."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    try:
        body = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise _fail(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}", 2
        ) from None
    if not isinstance(body, dict):
        raise _fail(f"{path} must hold a mapping with name, base, configs, grid", 2)
    body.setdefault("name", path.stem)
    return body


def print_sweep(sweep: SweepOut) -> None:
    from rich.console import Console

    counts = ", ".join(f"{status} {n}" for status, n in sweep.counts.items() if n)
    Console().print(
        f"sweep [bold]{sweep.id}[/bold] {sweep.name!r}: {sweep.n_jobs} jobs, "
        f"{sweep.status} ({counts or 'no jobs'})"
    )


def submit_sweep(body: dict[str, Any], url: str | None, token: str | None) -> None:
    """Queue ``body`` (``sweep submit``, ``sweep preset --submit``) and print the sweep."""
    with open_scheduler(url, token) as port:
        print_sweep(call_or_exit(lambda: port.submit_sweep(body), url))


@sweep_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="sweep file, YAML or JSON")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Validate, expand and queue a sweep; prints its id."""
    submit_sweep(read_sweep_file(file), url, token)


@sweep_app.command("list")
def list_sweeps(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: Url = None,
    token: Token = None,
) -> None:
    """Sweeps, newest first, with job counts by status."""
    from rich.console import Console
    from rich.table import Table

    from protocol.vocabulary import JobStatus

    with open_scheduler(url, token) as port:
        page = call_or_exit(lambda: port.list_sweeps(limit), url)
    table = Table(title=f"{page.total} sweeps")
    for column in ("id", "name", "status", "jobs", "queued", "running", "done", "failed"):
        table.add_column(column)
    shown = (JobStatus.queued, JobStatus.running, JobStatus.succeeded, JobStatus.failed)
    for sweep in page.items:
        table.add_row(
            str(sweep.id), sweep.name, sweep.status.value, str(sweep.n_jobs),
            *(str(sweep.counts.get(status, 0)) for status in shown),
        )
    Console().print(table)


@sweep_app.command("show")
def show(sweep_id: int, url: Url = None, token: Token = None) -> None:
    """One sweep with its job counts by status."""
    with open_scheduler(url, token) as port:
        print_sweep(call_or_exit(lambda: port.get_sweep(sweep_id), url))


@sweep_app.command("cancel")
def cancel(sweep_id: int, url: Url = None, token: Token = None) -> None:
    """Cancel queued jobs now and running ones at their next heartbeat."""
    with open_scheduler(url, token) as port:
        print_sweep(call_or_exit(lambda: port.cancel_sweep(sweep_id), url))


def results(
    sweep_id: int,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="dotted config paths, repeated or comma-separated"),
    ] = None,
    compare_to: Annotated[
        str | None,
        typer.Option(
            "--compare-to",
            help="baseline row, FIELD:VALUE of --group-by fields (comma-separated), e.g. "
            "tag:lora: adds delta and p (Welch's t-test) to the other rows",
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, markdown, csv or json")
    ] = "table",
    metrics: Annotated[
        str,
        typer.Option("--metrics", help="comma-separated result metrics to show (default: all)"),
    ] = "",
    url: Url = None,
    token: Token = None,
) -> None:
    """Mean +/- sample std of every result metric over succeeded jobs, by group."""
    from cli.results_format import FORMATS, keep_metrics, render

    if output_format not in FORMATS:
        raise _fail(f"--format must be {', '.join(FORMATS)}; got {output_format!r}", 2)
    baseline = [compare_to] if compare_to else []
    with open_scheduler(url, token) as port:
        answer = call_or_exit(
            lambda: port.sweep_results(sweep_id, group_by or [], baseline), url
        ).model_dump(mode="json")
    kept = tuple(name.strip() for name in metrics.split(",") if name.strip())
    render(keep_metrics(answer, kept), output_format)
