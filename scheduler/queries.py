"""Read-only queries shared by the API and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import InvalidInput, NotFound
from scheduler.models import Job, Worker, utcnow


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    device: str | None
    free_memory_mb: int | None
    last_seen_at: datetime
    running_jobs: int


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_jobs(
    session: Session,
    sweep_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    pack_id: str | None = None,
) -> tuple[list[Job], int]:
    """Jobs in id order, filtered by sweep, status and pack; returns (page, total matching)."""
    conditions = []
    if sweep_id is not None:
        conditions.append(Job.sweep_id == sweep_id)
    if pack_id is not None:
        conditions.append(Job.pack_id == pack_id)
    if status is not None:
        if status not in JobStatus.__members__:
            raise InvalidInput(
                f"status must be one of {', '.join(JobStatus.__members__)}; got {status!r}"
            )
        conditions.append(Job.status == status)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    jobs = session.scalars(
        select(Job).where(*conditions).order_by(Job.id).limit(limit).offset(offset)
    )
    return list(jobs), total


def list_workers(
    session: Session, seen_within_s: float, now: datetime | None = None
) -> list[WorkerView]:
    """Workers seen within the window, with the number of jobs each runs now."""
    now = now or utcnow()
    running = (
        select(Job.worker_id, func.count().label("n"))
        .where(Job.status == JobStatus.running.value)
        .group_by(Job.worker_id)
        .subquery()
    )
    rows = session.execute(
        select(Worker, func.coalesce(running.c.n, 0))
        .outerjoin(running, running.c.worker_id == Worker.worker_id)
        .where(Worker.last_seen_at >= now - timedelta(seconds=seen_within_s))
        .order_by(Worker.worker_id)
    )
    return [
        WorkerView(
            worker_id=worker.worker_id,
            device=worker.device,
            free_memory_mb=worker.free_memory_mb,
            last_seen_at=worker.last_seen_at,
            running_jobs=int(n),
        )
        for worker, n in rows
    ]
