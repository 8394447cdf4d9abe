"""`tenslora demo`: the whole product on one machine, in minutes, with no GPU and no model hub.

Starts the scheduler on a fresh SQLite file and a CPU worker in the background, submits a small
real sweep (LoRA and tensor methods on the offline MiniLM backbone and the offline Rotten
Tomatoes task, a few seeds), shows progress, prints the results grouped by method and leaves the
URL. Both processes are stopped on exit, Ctrl-C included. It is ``tenslora run`` of that sweep,
on a database of its own (``--data-dir``, default a new temporary folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DEMO_METHODS = ("lora", "qkv", "qkv_depth", "att_qkv_depth")


def demo_sweep(methods: list[str], seeds: int, steps: int) -> dict[str, Any]:
    """The demo's sweep: every method at rank 4 (isorank), ``seeds`` seeds, ``steps`` steps."""
    return {
        "name": "demo",
        "base": {
            "kind": "train",
            "task": "rotten_tomatoes",
            "backbone": "minilm",
            "adapter": {"ranks": 4},
            "optim": {"lr": 5.0e-3},
            "train": {
                "max_steps": steps, "batch_size": 16, "max_length": 32,
                "log_every": max(1, steps // 6), "eval_every": steps,
                "max_train_samples": 16 * steps, "max_eval_samples": 256,
            },
        },
        "configs": [{"tag": method, "adapter": {"method": method}} for method in methods],
        "grid": {"seed": list(range(seeds))},
    }


def demo(
    methods: Annotated[str, typer.Option(help="comma-separated adapter methods")] = ",".join(
        DEMO_METHODS
    ),
    seeds: Annotated[int, typer.Option(min=1, max=10, help="seeds per method")] = 2,
    steps: Annotated[int, typer.Option(min=1, max=10_000, help="training steps per run")] = 150,
    cpu_slots: Annotated[int, typer.Option(min=1, max=64, help="runs at once")] = 2,
    port: Annotated[int, typer.Option(help="API port (0: any free one)")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="where the database and logs go (default: a new temp dir)")
    ] = None,
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="after the results, serve until Ctrl-C")
    ] = False,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 1800.0,
) -> None:
    """Run a small real sweep end to end on this machine's CPU and print its results."""
    from cli.run_cmd import HEADLINE_METRICS, run_locally

    wanted = [name.strip() for name in methods.split(",") if name.strip()]
    run_locally(
        demo_sweep(wanted, seeds, steps), data_dir=data_dir, workers=cpu_slots, port=port,
        keep_serving=keep_serving, timeout=timeout, group_by=["adapter.method"],
        metrics=HEADLINE_METRICS,
    )
