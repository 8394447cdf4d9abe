"""Results of a sweep: mean, sample std, min, max of each numeric result, grouped by config paths.

The aggregation runs in SQL on both backends: group values are JSON extracted from ``jobs.config``;
the std is the square root of sum((v - group mean)^2) / (n - 1), the deviations computed with a
window average (SQLite has no stddev).

With a baseline (``compare_to``), every other row's metrics also get ``delta`` (its mean minus the
baseline's) and ``p_value`` (Welch's two-sided t-test, from the same SQL summaries: Welch's
statistic needs only each side's mean, sample std and count).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import InvalidInput, NotFound
from scheduler.expand import DOTTED_PATH
from scheduler.models import Job, ResultValue, Sweep
from tenslora.core.job_spec import spec_paths

MAX_GROUP_PATHS = 8
#: Deepest brackets a ``compare_to`` value may hold (a group value is a config leaf: a rank list).
MAX_COMPARE_DEPTH = 32
#: What results group by: the job spec's own paths (the API's enum of ``group_by``).
GROUP_PATHS: tuple[str, ...] = spec_paths()


@dataclass
class ResultRow:
    group: dict[str, Any]
    n: int
    metrics: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    #: This row is the baseline the others are compared to (``compare_to``).
    baseline: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n": self.n, "metrics": self.metrics,
                "baseline": self.baseline}


def parse_group_by(values: Iterable[str]) -> list[str]:
    """``["tag,adapter.method", "seed"]`` -> ``["tag", "adapter.method", "seed"]``, checked."""
    paths: list[str] = []
    for value in values:
        for part in value.split(","):
            path = part.strip()
            if not path:
                continue
            if path not in GROUP_PATHS:
                raise InvalidInput(
                    f"group_by {path!r} is not a path of the job spec, such as "
                    "'adapter.method' (GET /openapi.json lists them)"
                )
            if path not in paths:
                paths.append(path)
    if len(paths) > MAX_GROUP_PATHS:
        raise InvalidInput(f"group_by takes at most {MAX_GROUP_PATHS} paths; got {len(paths)}")
    return paths


def default_group_by(definition: Mapping[str, Any] | None) -> list[str]:
    """Rows like the paper's Table 2 for a sweep ``definition`` (what was submitted): by tag when
    the sweep sets tags, and by adapter method for training sweeps (the dashboard's and
    ``tenslora run``'s default grouping)."""
    definition = definition or {}
    parts = [definition.get("base") or {}, *(definition.get("configs") or [])]
    grid = definition.get("grid") or {}
    keys = []
    if any("tag" in p for p in parts) or "tag" in grid:
        keys.append("tag")
    if (definition.get("base") or {}).get("kind", "train") == "train":
        keys.append("adapter.method")
    return keys or ["kind"]


def _group_columns(group_by: list[str]) -> list[Any]:
    return [
        Job.config[tuple(path.split("."))].as_json().label(f"g{index}")
        for index, path in enumerate(group_by)
    ]


def _key(values: Iterable[Any]) -> str:
    return json.dumps(list(values), sort_keys=True, default=str)


def group_values(
    session: Session, sweep_id: int, group_by: list[str], paths: list[str]
) -> dict[str, dict[str, Any]]:
    """Per group of ``aggregate_results`` (keyed by ``group_key``), the value at each of
    ``paths`` that its succeeded jobs share; None where they differ or lack it.

    For what a row stands for without grouping by it (the dashboard reads a row's ``regime`` and
    ``adapter.method`` from the job specs, whatever the table is grouped by).
    """
    succeeded = (Job.sweep_id == sweep_id, Job.status == JobStatus.succeeded.value)
    width = len(group_by)
    shared: dict[str, dict[str, Any]] = {}
    query = select(*_group_columns([*group_by, *paths])).where(*succeeded).distinct()
    for values in session.execute(query):
        key, found = _key(values[:width]), dict(zip(paths, values[width:], strict=True))
        known = shared.setdefault(key, found)
        for path in paths:
            if known[path] != found[path]:
                known[path] = None
    return shared


def best_job_per_group(
    session: Session,
    sweep_id: int,
    group_by: list[str],
    metric: str,
    lower_is_better: bool = False,
    where: Sequence[Any] = (),
) -> dict[str, int]:
    """Per group of ``aggregate_results`` (keyed by ``group_key``), the succeeded job with the
    best ``metric`` (ties: the lowest id), among the jobs that also meet ``where``."""
    succeeded = (Job.sweep_id == sweep_id, Job.status == JobStatus.succeeded.value)
    width = len(group_by)
    query = (
        select(*_group_columns(group_by), Job.id, ResultValue.value)
        .join(ResultValue, (ResultValue.job_id == Job.id) & (ResultValue.name == metric))
        .where(*succeeded, ResultValue.value.is_not(None), *where)
        .order_by(Job.id)
    )
    best: dict[str, tuple[float, int]] = {}
    for row in session.execute(query):
        key, job_id, value = _key(row[:width]), row[width], row[width + 1]
        score = -value if lower_is_better else value
        if key not in best or score > best[key][0]:
            best[key] = (score, job_id)
    return {key: job_id for key, (_, job_id) in best.items()}


def group_key(group: dict[str, Any]) -> str:
    """The key of a results row's ``group`` in ``group_values``."""
    return _key(group.values())


def aggregate_results(
    session: Session,
    sweep_id: int,
    group_by: list[str],
    compare_to: Mapping[str, str] | None = None,
) -> list[ResultRow]:
    """One row per distinct combination of ``group_by`` values among succeeded jobs.

    ``compare_to`` (from ``parse_compare_to``) marks the baseline row and adds ``delta`` and
    ``p_value`` to the others' metrics; ``InvalidInput`` when no row has its values.
    """
    if session.get(Sweep, sweep_id) is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    succeeded = (Job.sweep_id == sweep_id, Job.status == JobStatus.succeeded.value)
    width = len(group_by)

    jobs = select(*_group_columns(group_by), Job.id).where(*succeeded).subquery("succeeded")
    job_groups = [jobs.c[f"g{i}"] for i in range(width)]
    rows: dict[str, ResultRow] = {}
    for *values, n in session.execute(
        select(*job_groups, func.count()).select_from(jobs).group_by(*job_groups)
    ):
        rows[_key(values)] = ResultRow(group=dict(zip(group_by, values, strict=True)), n=n)

    values_q = (
        select(*_group_columns(group_by), ResultValue.name, ResultValue.value)
        .join(Job, Job.id == ResultValue.job_id)
        .where(*succeeded)
        .subquery("values")
    )
    groups = [values_q.c[f"g{i}"] for i in range(width)]
    partition = [*groups, values_q.c.name]
    deviations = select(
        *groups,
        values_q.c.name,
        values_q.c.value,
        (values_q.c.value - func.avg(values_q.c.value).over(partition_by=partition)).label("dev"),
    ).subquery("deviations")
    d_groups = [deviations.c[f"g{i}"] for i in range(width)]
    summary = select(
        *d_groups,
        deviations.c.name,
        func.count(deviations.c.value),
        func.avg(deviations.c.value),
        func.min(deviations.c.value),
        func.max(deviations.c.value),
        func.sum(deviations.c.dev * deviations.c.dev),
    ).group_by(*d_groups, deviations.c.name)
    for *values, name, n, mean, low, high, squares in session.execute(summary):
        row = rows.get(_key(values))
        if row is None:
            continue
        if n < 2 or squares is None:
            std = None
        elif low == high:
            std = 0.0  # exactly: the window mean of equal values can be off in the last bit
        else:
            std = math.sqrt(max(squares, 0.0) / (n - 1))
        row.metrics[name] = {"n": n, "mean": mean, "std": std, "min": low, "max": high}
    ordered = sorted(rows.values(), key=lambda row: _key(row.group.values()))
    compare(ordered, compare_to or {}, f"sweep {sweep_id} grouped by {', '.join(group_by)}")
    return ordered


def results_answer(
    session: Session, sweep_id: int, group_by: Iterable[str], compare_to: Iterable[str] = ()
) -> dict[str, Any]:
    """The results endpoint's answer from its raw query values (checked; ``InvalidInput``)."""
    paths = parse_group_by(group_by)
    baseline = parse_compare_to(compare_to, paths)
    rows = aggregate_results(session, sweep_id, paths, baseline)
    return {
        "sweep_id": sweep_id,
        "group_by": paths,
        "compare_to": baseline or None,
        "rows": [row.as_dict() for row in rows],
    }


# --- comparison against a baseline row -------------------------------------------------------

# A comma starts a new FIELD:VALUE only where a dotted path and a colon follow, so a value may
# itself hold commas (``adapter.ranks:[4,4],tag:lora``). The path is DOTTED_PATH's, its groups made
# non-capturing so that ``re.split`` returns only the parts.
_PATH = DOTTED_PATH.pattern.strip("^$").replace("(", "(?:")
_COMPARE_SPLIT = re.compile(rf",(?=\s*{_PATH}\s*:)")


def parse_compare_to(values: Iterable[str], group_by: Sequence[str]) -> dict[str, str]:
    """``["tag:lora"]`` -> ``{"tag": "lora"}``; each field must be one of ``group_by``, once.

    Raises ``InvalidInput`` with what is wrong; an empty input means no comparison (``{}``).
    """
    baseline: dict[str, str] = {}
    for value in values:
        for part in _COMPARE_SPLIT.split(value):
            if not part.strip():
                continue
            path, colon, wanted = part.partition(":")
            path = path.strip()
            if not colon or not DOTTED_PATH.match(path):
                raise InvalidInput(
                    f"compare_to {part.strip()!r} is not FIELD:VALUE such as 'tag:lora'"
                )
            if path not in group_by:
                raise InvalidInput(
                    f"compare_to field {path!r} is not one of group_by "
                    f"({', '.join(group_by) or 'empty'}): a baseline is a row of the grouped table"
                )
            if path in baseline:
                raise InvalidInput(f"compare_to names {path!r} twice")
            if _nesting(wanted) > MAX_COMPARE_DEPTH:
                raise InvalidInput(
                    f"compare_to value of {path!r} nests deeper than {MAX_COMPARE_DEPTH} levels"
                )
            baseline[path] = wanted.strip()
    return baseline


def _nesting(text: str) -> int:
    """How deep the brackets of ``text`` nest outside JSON strings, counted without recursion:
    ``value_matches`` parses the value as JSON, and Python's parser recurses once per level."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def value_matches(value: Any, wanted: str) -> bool:
    """Whether a group value is the one a ``compare_to`` text names.

    A string matches its own text; anything else matches the JSON the text parses to (numbers by
    value, so ``optim.lr:1e-4`` finds 0.0001; ``null`` finds jobs without the field).
    """
    if isinstance(value, str):
        return value == wanted
    try:
        parsed = json.loads(wanted)
    except ValueError:
        return False
    if _is_number(value) and _is_number(parsed):
        return bool(value == parsed)
    return _key([value]) == _key([parsed])


def compare_text(group: Mapping[str, Any]) -> str:
    """The ``compare_to`` text that names this group (``value_matches`` reads it back)."""
    return ",".join(
        f"{path}:{value if isinstance(value, str) else json.dumps(value)}"
        for path, value in group.items()
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def welch_p_value(
    mean: float, std: float, n: int, base_mean: float, base_std: float, base_n: int
) -> float | None:
    """Two-sided p of Welch's unequal-variance t-test from each side's mean, sample std, count.

    None when a side has fewer than 2 values (no sample variance) or when both sides are constant
    and equal (t = 0/0). Both constant but different: t is infinite, p = 0.0 (the limit, and what
    scipy's ``ttest_ind(equal_var=False)`` answers).
    """
    if n < 2 or base_n < 2:
        return None
    var, base_var = std * std / n, base_std * base_std / base_n
    if var + base_var == 0:
        return None if mean == base_mean else 0.0
    t = (mean - base_mean) / math.sqrt(var + base_var)
    # Welch-Satterthwaite degrees of freedom.
    df = (var + base_var) ** 2 / (var**2 / (n - 1) + base_var**2 / (base_n - 1))
    from scipy.special import stdtr  # the Student t CDF; imported only when comparing

    return min(1.0, float(2.0 * stdtr(df, -abs(t))))


def compare(rows: Sequence[ResultRow], baseline: Mapping[str, str], describe: str) -> None:
    """Mark the baseline row(s) and add ``delta`` and ``p_value`` to every other row's metrics.

    ``baseline`` may name only some group_by fields. Another field stratifies the comparison when
    it varies among rows that share their values of the named fields: with
    ``group_by=tag,task&compare_to=tag:lora`` each row is compared with LoRA on its own task (no
    LoRA row on that task: null). A field the named ones determine (``adapter.method`` when each
    tag has one method) does not: one baseline row serves every row. Raises ``InvalidInput``
    when no row has the baseline values (``describe`` names the grouping in the message).
    """
    if not baseline:
        return
    strata = _strata(rows, baseline)
    bases: dict[str, ResultRow] = {}
    for row in rows:
        if all(value_matches(row.group.get(k), v) for k, v in baseline.items()):
            row.baseline = True
            bases[_key(row.group.get(k) for k in strata)] = row
    if not bases:
        wanted = ",".join(f"{k}:{v}" for k, v in baseline.items())
        raise InvalidInput(f"compare_to {wanted!r} matches no row of {describe}")
    for row in rows:
        if row.baseline:
            continue
        base = bases.get(_key(row.group.get(k) for k in strata))
        for name, summary in row.metrics.items():
            other = None if base is None else base.metrics.get(name)
            summary["delta"], summary["p_value"] = _difference(summary, other)


def _strata(rows: Sequence[ResultRow], baseline: Mapping[str, str]) -> list[str]:
    """The group fields not named in ``baseline`` that vary among rows sharing the named ones."""
    others = [path for path in (rows[0].group if rows else {}) if path not in baseline]
    seen: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        named = _key(row.group.get(k) for k in baseline)
        for path in others:
            seen.setdefault((named, path), set()).add(_key([row.group.get(path)]))
    return [path for path in others
            if any(len(values) > 1 for (_, p), values in seen.items() if p == path)]


def _difference(
    summary: Mapping[str, Any], base: Mapping[str, Any] | None
) -> tuple[float | None, float | None]:
    """(delta, p_value) of one metric against the baseline's summary of it."""
    if base is None or base["mean"] is None or summary["mean"] is None:
        return None, None
    delta = summary["mean"] - base["mean"]
    # A constant group's exact mean is its min: the SQL average of 0.1, 0.1, 0.1 is off in the
    # last bit, which would turn two equal constant groups into an "infinitely significant" one.
    mean = summary["min"] if summary["std"] == 0 else summary["mean"]
    base_mean = base["min"] if base["std"] == 0 else base["mean"]
    p_value = welch_p_value(
        mean, summary["std"] or 0.0, summary["n"], base_mean, base["std"] or 0.0, base["n"]
    )
    return delta, p_value
