"""Plotly figures as HTML fragments (the page loads plotly.min.js from the plotly package).

Figures are plain dicts rendered with ``validate=False``: the schema check costs more than the
page it draws. Every trace is an SVG ``scatter`` (never ``scattergl``) so points are DOM nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.io as pio

from api.dashboard.tables import ResultsTable
from tenslora.core.metric_contract import (
    EVAL,
    GRAD_NORM,
    LR,
    METRIC_MODES,
    SPECTRUM_METRICS,
    TRAIN_LOSS,
    family,
)

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "height": 320,
    # A template by name needs validation; these few keys give the same clean look.
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "xaxis": {"gridcolor": "#eceff4", "zeroline": False},
    "yaxis": {"gridcolor": "#eceff4", "zeroline": False},
    "legend": {"orientation": "h", "y": -0.25},
}

#: One colour per tensor mode, the same in every plot of a job.
MODE_COLORS: dict[str, str] = dict(zip(
    METRIC_MODES,  # Input, Output, HeadDim, Heads, QKV, Layers, Core
    ("#3457d5", "#e8833a", "#8e5bd0", "#d9443c", "#22a06b", "#c2a01e", "#20263a"), strict=True,
))
_FALLBACK_COLORS = ("#3457d5", "#e8833a", "#22a06b", "#d9443c", "#8e5bd0", "#17a2b8")

#: Job plots: title and metric-name prefix (one ending without "/" is an exact name).
JOB_PLOTS: tuple[tuple[str, str], ...] = (
    ("Training loss", TRAIN_LOSS),
    ("Learning rate per group", family(LR)),
    ("Gradient norm per mode", family(GRAD_NORM)),
    ("SVD entropy per mode", family(SPECTRUM_METRICS["entropy"])),
    ("Top-1 energy per mode", family(SPECTRUM_METRICS["top1_energy"])),
    ("Evaluation", family(EVAL)),
)


def figure_html(figure: Mapping[str, Any], div_id: str) -> str:
    return pio.to_html(
        dict(figure), validate=False, full_html=False, include_plotlyjs=False,
        div_id=div_id, config=PLOT_CONFIG,
    )


def pareto_figure(table: ResultsTable, only_column: str | None = None) -> dict[str, Any] | None:
    """Each row's mean (with its std as error bar) against its parameter count, log x axis.

    One trace per column (per task), or only ``only_column`` when columns are metrics.
    """
    traces = []
    for index, column in enumerate(table.columns):
        if only_column is not None and column != only_column:
            continue
        points = [
            (row.params, cell, row.label)
            for row in table.rows
            if row.params and (cell := row.cells[index]) is not None
        ]
        if not points:
            continue
        traces.append({
            "type": "scatter",
            "mode": "markers",
            "name": column,
            "x": [p for p, _, _ in points],
            "y": [c.mean for _, c, _ in points],
            "error_y": {"type": "data", "array": [c.std or 0.0 for _, c, _ in points]},
            "text": [label for _, _, label in points],
            "hovertemplate": "%{text}<br>params %{x:,}<br>%{y:.4f}<extra>" + column + "</extra>",
            "marker": {"size": 9},
        })
    if not traces:
        return None
    y_title = table.metric if table.column_kind == "task" else only_column
    layout = {
        **_LAYOUT,
        "xaxis": {**_LAYOUT["xaxis"], "title": {"text": "adapter parameters"}, "type": "log"},
        "yaxis": {**_LAYOUT["yaxis"], "title": {"text": y_title}},
    }
    return {"data": traces, "layout": layout}


def series_by_prefix(
    points: Sequence[Mapping[str, Any]], prefix: str
) -> dict[str, tuple[list[float], list[float]]]:
    """Split metric points ``{step, name, value}`` into one (steps, values) series per name."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    exact = not prefix.endswith("/")
    for point in points:
        name = point["name"]
        if (exact and name != prefix) or (not exact and not name.startswith(prefix)):
            continue
        steps, values = series.setdefault(name if exact else name[len(prefix):], ([], []))
        steps.append(point["step"])
        values.append(point["value"])
    return series


def lines_figure(
    title: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]]
) -> dict[str, Any]:
    """One line (with markers) per series over training steps; a mode keeps its colour."""
    traces = []
    for index, (name, (steps, values)) in enumerate(series.items()):
        color = MODE_COLORS.get(name, _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)])
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "x": list(steps),
            "y": list(values), "marker": {"size": 4, "color": color}, "line": {"color": color},
        })
    layout = {
        **_LAYOUT,
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {**_LAYOUT["xaxis"], "title": {"text": "step"}},
        "showlegend": len(traces) > 1,
    }
    return {"data": traces, "layout": layout}


def job_figures(points: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(title, html) of every job plot that has data, in a fixed order."""
    out = []
    for index, (title, prefix) in enumerate(JOB_PLOTS):
        series = series_by_prefix(points, prefix)
        if series:
            out.append((title, figure_html(lines_figure(title, series), f"job-plot-{index}")))
    return out
