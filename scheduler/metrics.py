"""Training curves: points streamed by the worker, read per job and metric name."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import NotFound
from scheduler.limits import Limits, check_names
from scheduler.models import METRICS, Job, Metric
from scheduler.queue import owned_job


@dataclass(frozen=True)
class MetricPoint:
    step: int
    name: str
    value: float | None


def add_metrics(
    session: Session,
    job_id: int,
    lease_id: str,
    points: Iterable[MetricPoint],
    now: datetime | None = None,
    token_id: int | None = None,
    limits: Limits | None = None,
) -> int:
    """Store points of the job the lease owns; returns how many were stored.

    Points for a job cancelled under the worker are dropped (the worker stops soon).
    """
    points = list(points)
    check_names("metric name", (p.name for p in points), (limits or Limits()).metric_name_length)
    job = owned_job(session, job_id, lease_id, now, token_id)
    if job.status != JobStatus.running.value:
        return 0
    rows = [
        {
            "job_id": job_id,
            "attempt": job.attempt,
            "step": point.step,
            "name": point.name,
            "value": point.value
            if point.value is not None and math.isfinite(point.value)
            else None,
        }
        for point in points
    ]
    if rows:
        # Core insert: the ORM's bulk path costs several times more per call.
        session.execute(insert(METRICS), rows)
    return len(rows)


def get_metrics(session: Session, job_id: int, name: str | None = None) -> list[MetricPoint]:
    """Points of one job (optionally one metric), by name then step."""
    if session.get(Job, job_id) is None:
        raise NotFound(f"job {job_id} does not exist")
    query = select(Metric.step, Metric.name, Metric.value).where(Metric.job_id == job_id)
    if name is not None:
        query = query.where(Metric.name == name)
    rows = session.execute(query.order_by(Metric.name, Metric.step, Metric.id))
    return [MetricPoint(step=step, name=n, value=value) for step, n, value in rows]


def metric_names(session: Session, job_id: int) -> list[str]:
    rows = session.scalars(
        select(Metric.name).where(Metric.job_id == job_id).distinct().order_by(Metric.name)
    )
    return list(rows)
