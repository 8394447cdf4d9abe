"""Downloads of a results table: CSV, JSON and a LaTeX table in the paper's style."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from api.dashboard.tables import Cell, ResultsTable, format_number
from protocol.models import SIGNIFICANT_P

FORMATS: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "tex": "application/x-tex; charset=utf-8",
}


def _cell_dict(cell: Cell | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    return {"mean": cell.mean, "std": cell.std, "n": cell.n, "best": cell.best,
            "delta": cell.delta, "p_value": cell.p_value}


def to_json(table: ResultsTable) -> str:
    data = {
        "group_by": table.group_by,
        "column_kind": table.column_kind,
        "metric": table.metric,
        "compare_to": table.compare_to,
        "columns": table.columns,
        "rows": [
            {
                "group": row.group,
                "section": row.section,
                "baseline": row.baseline,
                "params": row.params,
                "percent_of_lora": row.percent_of_lora,
                "cells": {c: _cell_dict(cell) for c, cell in zip(table.columns, row.cells,
                                                                   strict=True)},
            }
            for row in table.rows
        ],
    }
    return json.dumps(data, indent=2)


def to_csv(table: ResultsTable) -> str:
    """One line per row; each column gives ``<column> mean``, ``<column> std``, ``<column> n``.

    With a baseline, also a ``baseline`` flag per row and ``<column> delta``,
    ``<column> p_value`` per column.
    """
    compared = table.compare_to is not None
    stats = ("mean", "std", "n", "delta", "p_value") if compared else ("mean", "std", "n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [*table.group_by, "section", *(["baseline"] if compared else []), "params",
              "percent_of_lora"]
    header += [f"{column} {stat}" for column in table.columns for stat in stats]
    writer.writerow(header)
    for row in table.rows:
        line: list[Any] = [row.group.get(k) for k in table.group_by]
        line += [row.section, *([str(row.baseline).lower()] if compared else []), row.params,
                 row.percent_of_lora]
        for cell in row.cells:
            line += [None if cell is None else getattr(cell, stat) for stat in stats]
        writer.writerow(["" if v is None else v for v in line])
    return out.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_cell(cell: Cell | None) -> str:
    if cell is None or cell.mean is None:
        return "--"
    text = format_number(cell.mean)
    if cell.std is not None and cell.n > 1:
        text += rf" $\pm$ {format_number(cell.std)}"
    text = rf"\textbf{{{text}}}" if cell.best else text
    if cell.significant:
        text += r"$^{*}$"
    if cell.delta is not None:
        text += rf" {{\scriptsize ($\Delta$ {cell.delta_text}, $p$ {cell.p_text})}}"
    return text


def to_latex(table: ResultsTable, caption: str = "") -> str:
    """A booktabs table: section rules like Table 2, best cell of each column in bold."""
    n_lead = 3  # row label, # params, % of LoRA
    spec = "l" + "r" * (len(table.columns) + n_lead - 1)
    header = ["", r"\# Params", r"\% LoRA", *(latex_escape(c) for c in table.columns)]
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.compare_to is not None:
        caption += (f"{'. ' if caption else ''}Delta and p (Welch's two-sided t-test) against "
                    f"{table.baseline_label}; * p < {SIGNIFICANT_P}")
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\"]
    for section, rows in table.sections:
        lines.append(r"\midrule")
        if section and section != "LoRA":
            width = len(table.columns) + n_lead
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{section}}}}} \\")
        for row in rows:
            percent = "" if row.percent_of_lora is None else f"{row.percent_of_lora:.1f}"
            params = "" if row.params is None else f"{row.params:,.0f}"
            cells = [latex_escape(row.label), params, percent]
            cells += [_latex_cell(c) for c in row.cells]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def render(table: ResultsTable, fmt: str, caption: str = "") -> str:
    if fmt == "csv":
        return to_csv(table)
    if fmt == "json":
        return to_json(table)
    if fmt == "tex":
        return to_latex(table, caption)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
