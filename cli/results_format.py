"""Render a results answer (``{group_by, compare_to, rows}``) as a table, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from protocol.models import SIGNIFICANT_P

STATS = ("mean", "std", "min", "max")
COMPARE_STATS = ("delta", "p_value")
FORMATS = ("table", "markdown", "csv", "json")


def _metric_names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({name for row in rows for name in row["metrics"]})


def keep_metrics(answer: dict[str, Any], metrics: tuple[str, ...]) -> dict[str, Any]:
    """Only ``metrics`` in every row, when the answer carries any of them (else every metric:
    a synthetic sweep reports its own names)."""
    carried = {name for row in answer["rows"] for name in row["metrics"]}
    if metrics and carried & set(metrics):
        for row in answer["rows"]:
            row["metrics"] = {k: v for k, v in row["metrics"].items() if k in metrics}
    return answer


def _group_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _significant(p_value: float | None) -> bool:
    return p_value is not None and p_value < SIGNIFICANT_P


def cell_text(summary: dict[str, Any] | None, compared: bool, separator: str = " ") -> str:
    """``mean ± std``, then with a baseline ``Δ +delta p=p`` (a ``*`` when p < 0.05)."""
    if summary is None or summary.get("mean") is None:
        return ""
    text = f"{summary['mean']:.4g}"
    if summary.get("std") is not None:
        text += f" ± {summary['std']:.2g}"
    if compared and summary.get("delta") is not None:
        p_value = summary.get("p_value")
        p_text = "p n/a" if p_value is None else f"p={p_value:.2g}"
        star = "*" if _significant(p_value) else ""
        text += f"{separator}Δ {summary['delta']:+.4g} {p_text}{star}"
    return text


def _caption(answer: dict[str, Any]) -> str:
    caption = "mean ± sample std (n - 1) over succeeded jobs"
    baseline = answer.get("compare_to")
    if baseline:
        named = ", ".join(f"{k}={v}" for k, v in baseline.items())
        caption += (f"; Δ and p (Welch's t-test, * p < {SIGNIFICANT_P}) "
                    f"against the baseline {named}")
    return caption


def render(answer: dict[str, Any], output_format: str) -> None:
    rows, paths = answer["rows"], answer["group_by"]
    names = _metric_names(rows)
    if output_format == "json":
        print(json.dumps(answer, indent=2))
    elif output_format == "csv":
        _csv(answer, names)
    elif not rows:
        print(f"sweep {answer['sweep_id']} has no succeeded jobs yet", file=sys.stderr)
    elif output_format == "markdown":
        print(_markdown(answer, names))
    else:
        _table(answer, rows, paths, names)


def _csv(answer: dict[str, Any], names: list[str]) -> None:
    rows, paths = answer["rows"], answer["group_by"]
    stats = STATS + COMPARE_STATS if answer.get("compare_to") else STATS
    lead = ["baseline"] if answer.get("compare_to") else []
    writer = csv.writer(sys.stdout)
    writer.writerow([*paths, "n", *lead, *(f"{name}_{stat}" for name in names for stat in stats)])
    for row in rows:
        values = [row["group"].get(path) for path in paths]
        flags = [str(row.get("baseline", False)).lower()] if lead else []
        cells = [row["metrics"].get(name, {}).get(stat) for name in names for stat in stats]
        writer.writerow([*values, row["n"], *flags, *("" if v is None else v for v in cells)])


def _row_cells(answer: dict[str, Any], row: dict[str, Any], names: list[str],
               separator: str) -> list[str]:
    compared = bool(answer.get("compare_to")) and not row.get("baseline")
    group = [_group_text(row["group"].get(path)) for path in answer["group_by"]]
    if row.get("baseline"):  # compare_to names group_by fields, so there is a group column
        group[-1] += " (baseline)"
    cells = [cell_text(row["metrics"].get(name), compared, separator) for name in names]
    return [*group, str(row["n"]), *cells]


def _markdown(answer: dict[str, Any], names: list[str]) -> str:
    """A GitHub-flavoured Markdown table, its caption below it."""
    paths = answer["group_by"]
    header = [*paths, "n", *names]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "|".join(":--" if h in paths else "--:" for h in header) + "|"]
    for row in answer["rows"]:
        lines.append("| " + " | ".join(_md(c) for c in _row_cells(answer, row, names, ", ")) + " |")
    return "\n".join([*lines, "", _md(_caption(answer)) + "."])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*") if text else text


def _table(answer: dict[str, Any], rows: list[dict[str, Any]], paths: list[str],
           names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(caption=_caption(answer))
    for column in (*paths, "n", *names):
        table.add_column(column, justify="left" if column in paths else "right")
    for row in rows:
        table.add_row(*_row_cells(answer, row, names, "\n"))
    Console(width=max(Console().width, 120)).print(table)
