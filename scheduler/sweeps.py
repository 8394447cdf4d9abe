"""Sweeps: create (expand + store), list, show with counts, cancel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from protocol.models import SweepOut
from protocol.vocabulary import JobStatus, Role, SweepStatus
from scheduler.errors import Forbidden, NotFound
from scheduler.expand import expand_sweep
from scheduler.limits import Limits, check_length
from scheduler.memory import estimate_memory_mb, observed_peaks, shape_key
from scheduler.models import JOBS, Job, Sweep, utcnow
from scheduler.states import move, sweep_status
from scheduler.tokens import TokenInfo
from tenslora.core.pack_key import pack_key


@dataclass
class SweepView:
    sweep: Sweep
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def status(self) -> SweepStatus:
        return sweep_status(self.sweep.cancelled_at is not None, self.counts)


def sweep_out(view: SweepView) -> SweepOut:
    """The wire's view of a sweep (the API's answer, and the local scheduler's)."""
    return SweepOut(
        id=view.sweep.id,
        name=view.sweep.name,
        priority=view.sweep.priority,
        n_jobs=view.sweep.n_jobs,
        status=view.status,
        counts=view.counts,
        created_at=view.sweep.created_at,
        cancelled_at=view.sweep.cancelled_at,
    )


def create_sweep(
    session: Session,
    name: str,
    base: Mapping[str, Any],
    configs: Sequence[Mapping[str, Any]] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    priority: int = 0,
    max_jobs: int = 10_000,
    owner_token_id: int | None = None,
    limits: Limits | None = None,
) -> SweepView:
    """Validate and store a sweep and its distinct jobs; raises ``InvalidInput`` storing nothing."""
    limits = limits or Limits()
    check_length("name", name, limits.name_length)
    jobs = expand_sweep(base, configs, grid, max_jobs)
    for index, job in enumerate(jobs):
        check_length(f"tag (job {index + 1} of the sweep)", getattr(job.spec, "tag", None),
                     limits.name_length)
    keys = [key for job in jobs if (key := shape_key(job.spec)) is not None]
    observed = observed_peaks(session, keys)
    now = utcnow()
    definition = {"base": dict(base), "configs": configs, "grid": grid}
    sweep = Sweep(
        name=name,
        priority=priority,
        definition=definition,
        n_jobs=len(jobs),
        created_at=now,
        owner_token_id=owner_token_id,
    )
    session.add(sweep)
    session.flush()
    rows = [
        {
            "sweep_id": sweep.id,
            "spec_hash": job.spec_hash,
            "kind": job.spec.kind,
            "config": job.spec.model_dump(mode="json"),
            "priority": priority,
            "status": JobStatus.queued.value,
            "attempt": 1,
            "memory_estimate_mb": estimate_memory_mb(job.spec, observed),
            "shape_key": shape_key(job.spec),
            "pack_key": pack_key(job.spec),
            "created_at": now,
        }
        for job in jobs
    ]
    session.execute(insert(JOBS), rows)
    return SweepView(sweep, {JobStatus.queued.value: len(jobs)})


def status_counts(session: Session, sweep_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.sweep_id == sweep_id).group_by(Job.status)
    )
    counts = {status.value: 0 for status in JobStatus}
    counts.update({status: n for status, n in rows})
    return counts


def get_sweep(session: Session, sweep_id: int) -> SweepView:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return SweepView(sweep, status_counts(session, sweep_id))


def list_sweeps(session: Session, limit: int = 50, offset: int = 0) -> tuple[list[SweepView], int]:
    """Newest first, each with its counts by status."""
    total = session.scalar(select(func.count()).select_from(Sweep)) or 0
    sweeps = session.scalars(select(Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset))
    views = [SweepView(sweep) for sweep in sweeps]
    if views:
        rows = session.execute(
            select(Job.sweep_id, Job.status, func.count())
            .where(Job.sweep_id.in_([view.sweep.id for view in views]))
            .group_by(Job.sweep_id, Job.status)
        )
        by_id = {view.sweep.id: view for view in views}
        for view in views:
            view.counts = {status.value: 0 for status in JobStatus}
        for sweep_id, status, n in rows:
            by_id[sweep_id].counts[status] = n
    return views, total


def may_cancel(owner_token_id: int | None, by: TokenInfo | None) -> bool:
    """Admins (and the host's own CLI, ``by=None``) cancel any sweep; submitters their own."""
    if by is None or by.role == Role.admin:
        return True
    return by.role == Role.submitter and owner_token_id == by.id


def cancel_sweep(session: Session, sweep_id: int, by: TokenInfo | None = None) -> SweepView:
    """Queued jobs are cancelled now; running ones learn it at their next heartbeat.

    A running job keeps its lease id, so its worker's heartbeat answers ``cancelled`` rather
    than 409. Cancelling twice changes nothing. ``by``: the token asking (``Forbidden`` unless
    ``may_cancel``).
    """
    sweep = session.get(Sweep, sweep_id, with_for_update=True)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    if not may_cancel(sweep.owner_token_id, by):
        raise Forbidden(f"sweep {sweep_id} was submitted by another token; only it or an admin "
                        "may cancel it")
    now = utcnow()
    if sweep.cancelled_at is None:
        sweep.cancelled_at = now
    session.execute(move(JOBS, JobStatus.cancelled, JOBS.c.sweep_id == sweep_id, now=now))
    session.flush()
    return SweepView(sweep, status_counts(session, sweep_id))
