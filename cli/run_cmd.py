"""`tenslora run SWEEP.yaml`: a sweep file run to the end on this machine, kept for later.

Starts the scheduler on a SQLite database that outlives the run (``--db``, default the one
``tenslora serve`` opens), one local worker with ``--workers`` CPU slots, submits the sweep, shows
progress and prints the results table (grouped as the dashboard groups it, ``--compare-to`` for
delta and p). Both processes are stopped on exit, Ctrl-C included; the database stays, so
``tenslora serve`` shows the sweep later. ``tenslora demo`` is this with a built-in sweep.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from protocol.models import MAX_PACK_JOBS

#: What the final table shows of a training run's result (all metrics when none is there).
HEADLINE_METRICS = ("accuracy", "mcc", "adapter_params", "percent_of_lora")


def run_locally(
    body: dict[str, Any],
    *,
    data_dir: Path | None,
    database_url: str | None = None,
    workers: int,
    pack_size: int | None = None,
    port: int,
    keep_serving: bool,
    timeout: float,
    group_by: list[str],
    compare_to: str | None = None,
    metrics: tuple[str, ...] | None = None,
) -> None:
    """Server + worker on this machine, ``body`` submitted and followed to its end, results shown.

    ``data_dir`` holds the logs and the worker's spool (and the database when ``database_url``
    is None; a new temporary folder when both are None). ``metrics``: the result metrics the
    table shows (all when None or none of them is there). ``pack_size``: the worker's
    ``--pack-size`` (None: its default for CPU slots). Exits 2 when the sweep is refused,
    130 on Ctrl-C.
    """
    from cli.local_cluster import ClusterError, LocalCluster

    worker_flags = ["--cpu-slots", str(workers), "--poll-interval", "1"]
    if pack_size is not None:
        worker_flags += ["--pack-size", str(pack_size)]
    cluster = LocalCluster(data_dir, port, worker_flags, database_url=database_url)
    try:
        with cluster.ctrl_c_stops():
            cluster.start()
            sweep_id = cluster.submit(body)
            cluster.follow(sweep_id, deadline=time.monotonic() + timeout)
            cluster.pause(0)
            cluster.print_results(sweep_id, group_by, compare_to, metrics)
            cluster.print_best_adapter(sweep_id)
            cluster.print_where()
            if keep_serving:
                cluster.serve_until_interrupted()
            else:
                cluster.pause(0)  # a Ctrl-C while the results printed still exits 130
    except ClusterError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; stopping the worker and the server", err=True)
        raise typer.Exit(130) from None
    finally:
        cluster.stop()


def _database(db: Path | None) -> tuple[str, Path]:
    """The database URL and the folder of the logs: ``--db``, else ``tenslora serve``'s own."""
    from platformdirs import user_data_dir

    from cli.local_scheduler import default_database_url

    url = f"sqlite:///{db.expanduser().resolve()}" if db else default_database_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return url, path.parent / f"{path.stem}-logs"
    return url, Path(user_data_dir("tenslora", appauthor=False)) / "run-logs"


def _check_table_options(
    body: dict[str, Any], group_by: str | None, compare_to: str | None
) -> list[str]:
    """The results grouping, checked before anything starts (a typo fails now, not at the end)."""
    from cli.local_scheduler import results_layout
    from protocol.errors import ApiRejected

    try:
        return results_layout(body, [group_by or ""], [compare_to or ""])
    except ApiRejected as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None


def run(
    file: Annotated[Path, typer.Argument(help="sweep file, YAML or JSON (as `sweep submit`)")],
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="runs at once on this machine's CPU")
    ] = 1,
    pack_size: Annotated[
        int | None,
        typer.Option(
            "--pack-size", min=1, max=MAX_PACK_JOBS,
            help="most compatible train jobs trained together in one process (a pack over one "
            "frozen backbone), in each of the --workers slots; 1 turns packs off (default 1: on "
            "a CPU a pack saves little, see docs/benchmarks.md)",
        ),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="SQLite file that keeps the sweep (default: the database `tenslora serve` "
            "opens: TENSLORA_DATABASE_URL, else scheduler.db in the user data dir)",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help="rows of the results table (default: tag when the sweep sets tags, plus "
            "adapter.method for training sweeps)",
        ),
    ] = None,
    compare_to: Annotated[
        str | None,
        typer.Option("--compare-to", help="baseline row for delta and p, e.g. tag:lora"),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help="comma-separated result metrics of the table (all when the runs report none "
            "of them; `tenslora results` shows every metric later)",
        ),
    ] = ",".join(HEADLINE_METRICS),
    port: Annotated[int, typer.Option(help="API port (0: any free one)")] = 0,
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="after the results, serve until Ctrl-C")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0, help="give up after this many seconds (0: never)")
    ] = 0.0,
) -> None:
    """Run a sweep file on this machine to the end, print its results, keep its database."""
    from cli.sweep_cmd import read_sweep_file

    body = read_sweep_file(file)
    paths = _check_table_options(body, group_by, compare_to)
    database_url, logs = _database(db)
    run_locally(
        body, data_dir=logs, database_url=database_url, workers=workers, pack_size=pack_size,
        port=port,
        keep_serving=keep_serving, timeout=timeout or math.inf, group_by=paths,
        compare_to=compare_to, metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
    )
