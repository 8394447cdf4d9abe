"""`tenslora sweep tune FILE`: a sweep file's jobs as Ray Tune trials, recorded by the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def tune(
    file: Annotated[Path, typer.Argument(help="sweep file, YAML or JSON (same schema as submit)")],
    asha: Annotated[
        str | None, typer.Option(help="stop weak trials early with ASHA on this eval/* metric")
    ] = None,
    mode: Annotated[str, typer.Option(help="max or min: which way --asha's metric is better")] = (
        "max"
    ),
    url: Annotated[
        str,
        typer.Option("--url", envvar="TENSLORA_API_URL", help="server URL"),
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(envvar="TENSLORA_TOKEN", help="submitter or admin token")
    ] = None,
    worker_token: Annotated[
        str | None,
        typer.Option(envvar="TENSLORA_WORKER_TOKEN", help="worker token for the trials "
                     "(default: --token, which must then be an admin token)"),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="join this Ray cluster (HOST:PORT)")
    ] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="GPUs of a local Ray")] = None,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs each trial reserves")] = 1.0,
    gpu_memory_mb: Annotated[
        int | None,
        typer.Option(help="memory of one GPU: trials whose estimate fits k times share a GPU"),
    ] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="trials running at once")] = None,
    grace_period: Annotated[int, typer.Option(help="ASHA: evaluations before a stop")] = 1,
) -> None:
    """Submit FILE through the API and run its jobs as Ray Tune trials (optionally with ASHA)."""
    from cli.sweep_cmd import read_sweep_file
    from protocol.errors import ApiError
    from worker.ray_env import RayEnvironmentError
    from worker.tune import SweepRejected, TuneOptions, check_options, run_tune

    if not token:
        typer.echo("error: a token is needed: --token or TENSLORA_TOKEN", err=True)
        raise typer.Exit(2)
    sweep = read_sweep_file(file)
    options = TuneOptions(
        asha_metric=asha, mode=mode, ray_address=ray_address, num_cpus=num_cpus,
        num_gpus=num_gpus, cpus_per_trial=cpus_per_trial, gpu_memory_mb=gpu_memory_mb,
        max_concurrent=max_concurrent, grace_period=grace_period,
    )
    try:
        check_options(options)
        summary = run_tune(sweep, url, token, worker_token, options)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SweepRejected as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if exc.status in (400, 422) else 1) from None
    except ApiError as exc:
        typer.echo(f"error: the API at {url} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except RayEnvironmentError as exc:  # its own Ray could not be kept off the network
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    typer.echo(f"sweep {summary.sweep_id}: {summary.n_jobs} jobs ({counts})", err=True)
    typer.echo(summary.sweep_id)
