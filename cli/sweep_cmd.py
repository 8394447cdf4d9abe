"""`tenslora sweep submit|list|show|cancel` and `tenslora results`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

sweep_app = typer.Typer(help="Submit and follow sweeps.", no_args_is_help=True)

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="TENSLORA_API_URL", help="server URL; default: the local DB"),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="TENSLORA_TOKEN", help="bearer token for --url")
]


def _client(url: str | None, token: str | None) -> Any:
    from cli.sweep_client import make_client

    return make_client(url, token)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _call(operation: Any) -> dict[str, Any]:
    """Run a client call; refused input exits 2, other failures exit 1."""
    from cli.sweep_client import ClientError

    try:
        return operation()
    except ClientError as exc:
        raise _fail(exc.detail, 2 if exc.status in (404, 422) else 1) from None


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


def _print_sweep(sweep: dict[str, Any]) -> None:
    from rich.console import Console

    counts = ", ".join(f"{k} {v}" for k, v in sweep["counts"].items() if v)
    Console().print(
        f"sweep [bold]{sweep['id']}[/bold] {sweep['name']!r}: {sweep['n_jobs']} jobs, "
        f"{sweep['status']} ({counts or 'no jobs'})"
    )


@sweep_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="sweep file, YAML or JSON")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Validate, expand and queue a sweep; prints its id."""
    body = read_sweep_file(file)
    sweep = _call(lambda: _client(url, token).submit(body))
    _print_sweep(sweep)


@sweep_app.command("list")
def list_sweeps(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: Url = None,
    token: Token = None,
) -> None:
    """Sweeps, newest first, with job counts by status."""
    from rich.console import Console
    from rich.table import Table

    page = _call(lambda: _client(url, token).list(limit))
    table = Table(title=f"{page['total']} sweeps")
    for column in ("id", "name", "status", "jobs", "queued", "running", "done", "failed"):
        table.add_column(column)
    for s in page["items"]:
        c = s["counts"]
        table.add_row(
            str(s["id"]),
            s["name"],
            s["status"],
            str(s["n_jobs"]),
            str(c.get("queued", 0)),
            str(c.get("running", 0)),
            str(c.get("succeeded", 0)),
            str(c.get("failed", 0)),
        )
    Console().print(table)


@sweep_app.command("show")
def show(sweep_id: int, url: Url = None, token: Token = None) -> None:
    """One sweep with its job counts by status."""
    _print_sweep(_call(lambda: _client(url, token).show(sweep_id)))


@sweep_app.command("cancel")
def cancel(sweep_id: int, url: Url = None, token: Token = None) -> None:
    """Cancel queued jobs now and running ones at their next heartbeat."""
    _print_sweep(_call(lambda: _client(url, token).cancel(sweep_id)))


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
    answer = _call(lambda: _client(url, token).results(sweep_id, group_by or [], baseline))
    kept = tuple(name.strip() for name in metrics.split(",") if name.strip())
    render(keep_metrics(answer, kept), output_format)
