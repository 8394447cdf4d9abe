"""The results table of a sweep, laid out like the paper's Table 2.

Input is what the results query returns (``{group, n, metrics: {name: {mean, std, min, max}}}``
rows, aggregated in SQL): this module only pivots and orders those rows, picks the best cell of
each column and formats numbers. It never averages anything itself, so the page shows exactly what
the API answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.models import SIGNIFICANT_P
from tenslora.core.methods import METHODS
from tenslora.core.metric_contract import TRAIN_LOSS
from tenslora.core.regimes import REGIMES

#: Metrics where a smaller value is the better one (everything else: larger is better).
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"loss", TRAIN_LOSS, "wall_s", "peak_memory_mb", "adapter_params", "trainable_params"}
)
#: The result field that gives a row its "# params" (the runner's name), then fallbacks.
PARAMS_METRICS: tuple[str, ...] = ("adapter_params", "trainable_params")
#: Metrics listed first when columns are metrics; the rest follow alphabetically.
PREFERRED_METRICS: tuple[str, ...] = (
    "accuracy", "mcc", "f1", "best_accuracy", "best_mcc", "adapter_params", "trainable_params",
)
SECTIONS: tuple[str, ...] = ("LoRA", "Isorank", "Isoparameters", "")
#: The section of each rank regime of the job spec (``tenslora.core.regimes.REGIMES``); related
#: methods go with everything else, after the paper's two regimes.
REGIME_SECTIONS: dict[str, str] = dict(zip(REGIMES, ("LoRA", "Isorank", "Isoparameters", ""),
                                            strict=True))
#: Spec paths a row's section and method come from (``data.results`` sends them as ``spec``).
SPEC_PATHS: tuple[str, ...] = ("regime", "adapter.method")
TASK_KEY = "task"


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None
    n: int
    best: bool = False
    #: Against the table's baseline row (``compare_to``): mean minus its mean, Welch's p.
    delta: float | None = None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANT_P

    @property
    def delta_text(self) -> str:
        if self.delta is None:
            return ""
        return f"{'+' if self.delta >= 0 else '-'}{format_number(abs(self.delta))}"

    @property
    def p_text(self) -> str:
        """Two significant digits; ``n/a`` where the test is undefined (see the API docs)."""
        return "n/a" if self.p_value is None else f"{self.p_value:.2g}"

    @property
    def comparison(self) -> str:
        """``Δ +0.0123 · p 0.012`` against the baseline; empty when not compared."""
        return f"Δ {self.delta_text} · p {self.p_text}" if self.delta is not None else ""

    @property
    def text(self) -> str:
        """``mean +/- std (n)``; a single run has no sample std."""
        if self.mean is None:
            return ""
        if self.std is None or (self.n < 2 and not self.std):
            return f"{format_number(self.mean)} ({self.n})"
        return f"{format_number(self.mean)} +/- {format_number(self.std)} ({self.n})"


@dataclass
class Row:
    group: dict[str, Any]
    label: str
    section: str
    method: str | None
    params: float | None = None
    percent_of_lora: float | None = None
    cells: list[Cell | None] = field(default_factory=list)
    baseline: bool = False  # the row the others are compared to


@dataclass
class ResultsTable:
    group_by: list[str]
    columns: list[str]
    column_kind: str  # "task" | "metric"
    metric: str | None  # the metric shown in every cell when columns are tasks
    rows: list[Row]
    #: Tasks as columns, and a row's parameter count differs between tasks: it needs the
    #: results grouped by the rows alone (``row_results``).
    needs_row_results: bool = False
    #: The baseline row as ``compare_to`` text (``tag:lora``), when cells carry delta / p.
    compare_to: str | None = None

    @property
    def baseline_label(self) -> str | None:
        return next((row.label for row in self.rows if row.baseline), None)

    @property
    def sections(self) -> list[tuple[str, list[Row]]]:
        """Rows in order, split where the section changes (for section headers)."""
        out: list[tuple[str, list[Row]]] = []
        for row in self.rows:
            if not out or out[-1][0] != row.section:
                out.append((row.section, []))
            out[-1][1].append(row)
        return out


def format_number(value: float | None) -> str:
    """Short, stable formatting: scores with 4 decimals, counts with thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}"


def method_of(group: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> str | None:
    """The adapter method a row stands for: the one its jobs' specs share, else the group's
    ``adapter.method``, else (results without specs) a tag that names one."""
    for source in (spec or {}, group):
        if isinstance(source.get("adapter.method"), str):
            return source["adapter.method"]
    for value in group.values():
        if isinstance(value, str):
            head = value.split("-")[0].split(" ")[0]
            if head in METHODS:
                return head
    return None


def section_of(
    group: Mapping[str, Any], method: str | None, spec: Mapping[str, Any] | None = None
) -> str:
    """LoRA first, then the paper's two rank regimes, then anything else.

    The regime is the job spec's ``regime`` (preset rows carry it). Jobs stored before the field
    existed have none: their regime is read from the tag text, as it was then.
    """
    regime = (spec or {}).get("regime")
    if regime in REGIME_SECTIONS:
        return REGIME_SECTIONS[regime]
    if method == "lora":
        return "LoRA"
    text = " ".join(str(v).lower() for v in group.values())
    if "isorank" in text:
        return "Isorank"
    if "isoparam" in text:
        return "Isoparameters"
    return ""


def _label(group: Mapping[str, Any], group_by: Sequence[str]) -> str:
    return " / ".join("-" if group.get(k) is None else str(group.get(k)) for k in group_by)


def _sort_key(row: Row) -> tuple[int, int, str]:
    method_rank = list(METHODS).index(row.method) if row.method in METHODS else len(METHODS)
    return SECTIONS.index(row.section), method_rank, row.label


def _row_key(group: Mapping[str, Any], group_by: Sequence[str]) -> tuple[str, ...]:
    return tuple(repr(group.get(k)) for k in group_by)


def metric_names(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every metric the rows carry, preferred ones first."""
    names = {name for row in results for name in row.get("metrics", {})}
    first = [m for m in PREFERRED_METRICS if m in names]
    return first + sorted(names - set(first))


def _params_metric(names: Sequence[str]) -> str | None:
    present = set(names)
    return next((m for m in PARAMS_METRICS if m in present), None)


def _cell(stats: Mapping[str, Any] | None, n: int) -> Cell | None:
    """A metric's stats; its own ``n`` when given (a job may lack a metric), else the row's."""
    if not stats or stats.get("mean") is None:
        return None
    return Cell(mean=stats["mean"], std=stats.get("std"), n=int(stats.get("n", n)),
                delta=stats.get("delta"), p_value=stats.get("p_value"))


def _params(stats_by_name: Mapping[str, Any]) -> float | None:
    for name in PARAMS_METRICS:
        stats = stats_by_name.get(name)
        if stats and stats.get("mean") is not None:
            return float(stats["mean"])
    return None


def _new_row(result: Mapping[str, Any], group_by: Sequence[str], n_columns: int) -> Row:
    own = {k: result["group"].get(k) for k in group_by}
    spec = result.get("spec")
    method = method_of(own, spec)
    return Row(own, _label(own, group_by), section_of(own, method, spec), method,
               cells=[None] * n_columns)


def build_table(
    results: Sequence[Mapping[str, Any]],
    group_by: Sequence[str],
    *,
    row_results: Sequence[Mapping[str, Any]] | None = None,
    metric: str | None = None,
    columns: str = "metrics",
    compare_to: str | None = None,
) -> ResultsTable:
    """Pivot results rows into the paper's layout.

    ``columns="metrics"``: ``results`` is grouped by ``group_by``; one column per metric.
    ``columns="tasks"``: ``results`` is grouped by ``group_by + ["task"]``; one column per task,
    each cell the chosen ``metric``; a row's parameter count is its tasks' common count, or comes
    from ``row_results`` (grouped by ``group_by`` alone) when the tasks disagree.
    ``compare_to``: the baseline the ``results`` were compared to (their delta / p_value).
    """
    group_by = list(group_by)
    if columns == "tasks":
        column_names = sorted({str(r["group"].get(TASK_KEY)) for r in results})
    else:
        # The metric that gives "# params" is shown there, not again as a column.
        names = metric_names(results)
        params_metric = _params_metric(names)
        column_names = [m for m in names if m != params_metric]
    # Every lookup below is by dict, so the table costs time linear in its cells.
    column_index = {name: index for index, name in enumerate(column_names)}
    rows: dict[tuple[str, ...], Row] = {}
    task_params: dict[tuple[str, ...], set[float | None]] = {}
    for result in results:
        key = _row_key(result["group"], group_by)
        row = rows.get(key)
        if row is None:  # not setdefault: a new row allocates a cell per column
            row = rows[key] = _new_row(result, group_by, len(column_names))
        row.baseline = row.baseline or bool(result.get("baseline"))
        if columns == "tasks":
            index = column_index[str(result["group"].get(TASK_KEY))]
            row.cells[index] = _cell(result["metrics"].get(metric or ""), result["n"])
            task_params.setdefault(key, set()).add(_params(result["metrics"]))
        else:
            row.cells = [_cell(result["metrics"].get(c), result["n"]) for c in column_names]
            row.params = _params(result["metrics"])
    # A row's adapter is usually the same on every task: then its count is that one value.
    ambiguous = False
    for key, values in task_params.items():
        if len(values) == 1:
            rows[key].params = next(iter(values))
        else:
            ambiguous = True
    for result in row_results or ():
        matching = rows.get(_row_key(result["group"], group_by))
        if matching is not None:
            matching.params = _params(result["metrics"])
    ordered = sorted(rows.values(), key=_sort_key)
    _fill_percent_of_lora(ordered)
    kind = "task" if columns == "tasks" else "metric"
    metrics_per_column = [metric or ""] * len(column_names) if kind == "task" else column_names
    _mark_best(ordered, metrics_per_column)
    return ResultsTable(group_by, column_names, kind, metric if kind == "task" else None, ordered,
                        needs_row_results=ambiguous and row_results is None,
                        compare_to=compare_to if any(r.baseline for r in ordered) else None)


def _fill_percent_of_lora(rows: list[Row]) -> None:
    lora = next((r for r in rows if r.method == "lora" and r.params), None)
    if lora is None or not lora.params:
        return
    for row in rows:
        if row.params is not None:
            row.percent_of_lora = 100.0 * row.params / lora.params


def _mark_best(rows: list[Row], metrics_per_column: Sequence[str]) -> None:
    """Mark the best mean of each column (every tied cell), lower-is-better metrics inverted."""
    for index, metric in enumerate(metrics_per_column):
        cells = [r.cells[index] for r in rows]
        means = [c.mean for c in cells if c is not None and c.mean is not None]
        if not means:
            continue
        best = min(means) if metric in LOWER_IS_BETTER else max(means)
        for row in rows:
            cell = row.cells[index]
            if cell is not None and cell.mean == best:
                row.cells[index] = dataclasses.replace(cell, best=True)
