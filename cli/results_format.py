"""Render a results answer (``{group_by, rows}``) as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

STATS = ("mean", "std", "min", "max")


def _metric_names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({name for row in rows for name in row["metrics"]})


def _group_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def render(answer: dict[str, Any], output_format: str) -> None:
    rows, paths = answer["rows"], answer["group_by"]
    names = _metric_names(rows)
    if output_format == "json":
        print(json.dumps(answer, indent=2))
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow([*paths, "n", *(f"{name}_{stat}" for name in names for stat in STATS)])
        for row in rows:
            values = [row["group"].get(path) for path in paths]
            stats = [row["metrics"].get(name, {}).get(stat) for name in names for stat in STATS]
            writer.writerow([*values, row["n"], *("" if v is None else v for v in stats)])
    elif not rows:
        print(f"sweep {answer['sweep_id']} has no succeeded jobs yet", file=sys.stderr)
    else:
        _table(rows, paths, names)


def _table(rows: list[dict[str, Any]], paths: list[str], names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(caption="mean ± sample std (n - 1) over succeeded jobs")
    for column in (*paths, "n", *names):
        table.add_column(column, justify="left" if column in paths else "right")
    for row in rows:
        cells = []
        for name in names:
            summary = row["metrics"].get(name)
            if summary is None or summary["mean"] is None:
                cells.append("")
            elif summary["std"] is None:
                cells.append(f"{summary['mean']:.4g}")
            else:
                cells.append(f"{summary['mean']:.4g} ± {summary['std']:.2g}")
        group = [_group_text(row["group"].get(path)) for path in paths]
        table.add_row(*group, str(row["n"]), *cells)
    Console(width=max(Console().width, 120)).print(table)
