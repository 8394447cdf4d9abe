"""Results of a sweep: mean, sample std, min, max of each numeric result, grouped by config paths.

The aggregation runs in SQL on both backends: group values are JSON extracted from ``jobs.config``;
the std is the square root of sum((v - group mean)^2) / (n - 1), the deviations computed with a
window average (SQLite has no stddev).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.errors import InvalidInput, NotFound
from scheduler.expand import DOTTED_PATH
from scheduler.models import Job, ResultValue, Sweep
from scheduler.states import JobStatus

MAX_GROUP_PATHS = 8


@dataclass
class ResultRow:
    group: dict[str, Any]
    n: int
    metrics: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n": self.n, "metrics": self.metrics}


def parse_group_by(values: Iterable[str]) -> list[str]:
    """``["tag,adapter.method", "seed"]`` -> ``["tag", "adapter.method", "seed"]``, checked."""
    paths: list[str] = []
    for value in values:
        for part in value.split(","):
            path = part.strip()
            if not path:
                continue
            if not DOTTED_PATH.match(path):
                raise InvalidInput(
                    f"group_by {path!r} is not a dotted config path such as 'adapter.method'"
                )
            if path not in paths:
                paths.append(path)
    if len(paths) > MAX_GROUP_PATHS:
        raise InvalidInput(f"group_by takes at most {MAX_GROUP_PATHS} paths; got {len(paths)}")
    return paths


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


def group_key(group: dict[str, Any]) -> str:
    """The key of a results row's ``group`` in ``group_values``."""
    return _key(group.values())


def aggregate_results(session: Session, sweep_id: int, group_by: list[str]) -> list[ResultRow]:
    """One row per distinct combination of ``group_by`` values among succeeded jobs."""
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
    return sorted(rows.values(), key=lambda row: _key(row.group.values()))
