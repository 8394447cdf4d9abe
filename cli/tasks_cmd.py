"""`tenslora tasks`: the task registry, with modality, labels and the majority baseline."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the tasks a train spec may name; offline ones work with no hub."""
    from tenslora.training.tasks import task_rows

    rows = task_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tasks")
    for column in ("name", "modality", "labels", "offline", "synthetic", "majority", "source"):
        table.add_column(column, justify="right" if column in ("labels", "majority") else "left")
    for row in rows:
        baseline = row["majority_baseline"]
        table.add_row(
            str(row["name"]), str(row["modality"]), str(row["num_labels"]),
            "yes" if row["offline"] else "no", "yes" if row["synthetic"] else "no",
            "-" if baseline is None else f"{baseline:.3f}", str(row["source"]),
        )
    Console(width=160).print(table)
