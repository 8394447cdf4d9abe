"""`tenslora sweep preset NAME`: write (or submit) one of the paper's sweeps as a sweep file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tenslora.core.allocation import GROW_ENTROPY, SHRINK_TOP1


def preset(
    name: Annotated[str, typer.Argument(help="paper-table2 | core-lr | allocate")],
    task: Annotated[str, typer.Option(help="task name (see `tenslora tasks`)")] = "cola",
    backbone: Annotated[
        str | None, typer.Option(help="default: roberta-base for text, vit-base-in21k for images")
    ] = None,
    seeds: Annotated[int, typer.Option(help="runs per row, seeds 0..N-1")] = 5,
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA rank r of the rows")] = 4,
    related: Annotated[
        bool, typer.Option(help="paper-table2: add FacT, LoTR, LoRTA, CaRA")
    ] = True,
    from_sweep: Annotated[
        int | None, typer.Option("--from-sweep", help="allocate: the finished sweep to read")
    ] = None,
    shrink_top1: Annotated[
        float,
        typer.Option("--shrink-top1", min=0.0, max=1.0,
                     help="allocate: a mode with at least this top-1 energy is redundant and "
                     "shrinks to rank 1 or 2, freeing budget for the others"),
    ] = SHRINK_TOP1,
    grow_entropy: Annotated[
        float,
        typer.Option("--grow-entropy", min=0.0, max=1.0,
                     help="allocate: modes with at least this normalised SVD entropy grow into "
                     "the budget left"),
    ] = GROW_ENTROPY,
    only_changed: Annotated[
        bool,
        typer.Option("--only-changed", help="allocate: leave out the rows whose ranks the "
                     "allocator kept (they would repeat the source runs)"),
    ] = False,
    sweep_name: Annotated[str | None, typer.Option("--name", help="sweep name")] = None,
    priority: Annotated[int | None, typer.Option(help="higher runs first")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="dotted.path=value on every job, e.g. train.max_steps=50"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write here (.yaml/.yml or .json)")] = None,
    submit: Annotated[bool, typer.Option(help="POST the sweep to the API instead")] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="TENSLORA_API_URL",
                     help="server URL for --submit; default: the local database"),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="TENSLORA_TOKEN", help="bearer token for --url")
    ] = None,
) -> None:
    """Write a preset sweep file (YAML on stdout by default) or submit it with --submit."""
    if name == "allocate":
        thresholds = {"shrink_top1": shrink_top1, "grow_entropy": grow_entropy}
        sweep = _allocate_or_exit(from_sweep, seeds, url, token, thresholds, only_changed)
    else:
        sweep = _build_or_exit(name, task, backbone, seeds, lora_rank, related)
    if sweep_name:
        sweep["name"] = sweep_name
    if priority is not None:
        sweep["priority"] = priority
    _apply_overrides_or_exit(sweep, overrides or [])
    _print_summary(sweep, lora_rank)
    if submit:  # as `tenslora sweep submit`: to --url over HTTP, else into the local database
        from cli.sweep_cmd import submit_sweep

        submit_sweep(sweep, url, token)
        return
    text = _render(sweep, out)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _build_or_exit(
    name: str, task: str, backbone: str | None, seeds: int, lora_rank: int, related: bool
) -> dict[str, Any]:
    from tenslora.sweeps import presets

    try:
        if name == "paper-table2":
            return presets.paper_table2(task, backbone, seeds, lora_rank, related)
        if name == "core-lr":
            return presets.core_lr(task, backbone, seeds)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    raise _fail(f"preset must be one of {', '.join(presets.PRESETS)}; got {name!r}")


def _allocate_or_exit(
    from_sweep: int | None,
    seeds: int,
    url: str | None,
    token: str | None,
    thresholds: dict[str, float],
    only_changed: bool,
) -> dict[str, Any]:
    from cli.allocate_source import fetch_finished_runs
    from cli.scheduler_port import open_scheduler
    from protocol.errors import ApiError
    from tenslora.sweeps.presets import allocate

    if from_sweep is None:
        raise _fail("preset allocate needs --from-sweep ID, a finished sweep to read spectra from")
    try:
        with open_scheduler(url, token) as port:
            runs = fetch_finished_runs(port, from_sweep)
        return allocate(runs, seeds, name=f"allocate-from-sweep-{from_sweep}",
                        only_changed=only_changed, **thresholds)
    except ApiError as exc:  # not there, not allowed, or no answer: the message says which
        raise _fail(f"sweep {from_sweep}: {exc.detail}") from None
    except ValueError as exc:
        raise _fail(f"sweep {from_sweep}: {exc}") from None


def _apply_overrides_or_exit(sweep: dict[str, Any], overrides: list[str]) -> None:
    from pydantic import ValidationError

    from tenslora.core.job_spec import parse_spec
    from tenslora.sweeps.presets import expand_jobs, set_base_value

    try:
        for assignment in overrides:
            set_base_value(sweep, assignment)
        for job in expand_jobs(sweep):
            parse_spec(job)
    except (ValueError, ValidationError) as exc:
        raise _fail(f"the preset's jobs do not validate: {exc}") from None


def _print_summary(sweep: dict[str, Any], lora_rank: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from tenslora.sweeps.presets import adapter_parameters

    backbone = sweep["base"]["backbone"]
    lora = adapter_parameters({"method": "lora", "ranks": lora_rank}, backbone)
    n_seeds = len(sweep.get("grid", {}).get("seed", [0]))
    table = Table(title=f"{sweep['name']}: {len(sweep['configs']) * n_seeds} jobs")
    for column in ("tag", "method", "factorization", "projections", "ranks", "# params", "%"):
        table.add_column(column, justify="right" if column in ("# params", "%") else "left")
    for entry in sweep["configs"]:
        adapter = entry["adapter"]
        params = adapter_parameters(adapter, backbone)
        table.add_row(
            entry["tag"], adapter["method"],
            "-" if adapter["method"] == "lora" else adapter.get("factorization", "tucker"),
            ",".join(adapter.get("projections", ["q", "k", "v"])), str(adapter["ranks"]),
            f"{params:,}", f"{100 * params / lora:.1f}",
        )
    table.caption = f"LoRA r={lora_rank} on {backbone}: {lora:,} parameters"
    Console(stderr=True, width=130).print(table)


def _render(sweep: dict[str, Any], out: Path | None) -> str:
    if out is not None and out.suffix == ".json":
        return json.dumps(sweep, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(sweep, sort_keys=False, default_flow_style=None, width=100)


