"""`tenslora methods`: ranks and parameter counts of every method (the paper's "# Params")."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def methods(
    d_model: Annotated[int, typer.Option("--d-model", help="hidden size")] = 768,
    layers: Annotated[int, typer.Option("--layers", help="number of layers")] = 12,
    heads: Annotated[int, typer.Option("--heads", help="attention heads")] = 12,
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA rank to compare to")] = 4,
    factorization: Annotated[str, typer.Option(help="tucker or cp")] = "tucker",
    with_o: Annotated[
        bool, typer.Option("--with-o", help="also adapt the output projection")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print LoRA and every tensor method under isorank and isoparameters."""
    from rich.console import Console
    from rich.table import Table

    from tenslora.core.methods import METHODS
    from tenslora.core.parameter_table import method_rows

    projections = ("q", "k", "v", "o") if with_o else ("q", "k", "v")
    try:
        rows = method_rows(d_model, layers, heads, lora_rank, factorization, projections)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"d_model={d_model} layers={layers} heads={heads} LoRA r={lora_rank}")
    for column in ("regime", "method", "modes", "ranks", "# params", "% of LoRA"):
        table.add_column(
            column, justify="right" if column.startswith(("#", "%")) else "left", no_wrap=True
        )
    for row in rows:
        table.add_row(
            row["regime"],
            row["method"],
            " x ".join(METHODS[row["method"]].modes),
            ", ".join(map(str, row["ranks"])),
            f"{row['params']:,}",
            f"{row['percent_of_lora']:.1f}%",
        )
    console = Console()
    # Piped output has no terminal width; keep rows on one line rather than wrap at 80 columns.
    Console(width=max(console.width, 120)).print(table)
