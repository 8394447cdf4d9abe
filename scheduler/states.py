"""Job and sweep states, the ONE table of allowed transitions, and the one helper that moves jobs.

Every statement that changes ``jobs.status`` is built by ``move``: it filters on ``sources(to)``
(so a transition that is not listed here cannot happen, whatever the route or the race) and applies
the field resets of entering ``to``. The statuses and their sets
are defined once, in ``protocol.vocabulary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, Update, or_, update

from protocol.vocabulary import JobStatus, SweepStatus


def sweep_status(cancelled: bool, counts: Mapping[str, int]) -> SweepStatus:
    """A cancelled sweep is cancelled; else running while any job runs, queued while any waits."""
    if cancelled:
        return SweepStatus.cancelled
    if counts.get(JobStatus.running, 0):
        return SweepStatus.running
    if counts.get(JobStatus.queued, 0):
        return SweepStatus.queued
    return SweepStatus.finished


# (FROM, TO): why it happens.
TRANSITIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (JobStatus.queued, JobStatus.running): "a worker claimed it",
    (JobStatus.running, JobStatus.succeeded): "the worker completed it",
    (JobStatus.running, JobStatus.failed): "the worker failed it, or its last lease expired",
    (JobStatus.running, JobStatus.queued): "its lease expired (attempt + 1) or was released",
    (JobStatus.queued, JobStatus.cancelled): "its sweep was cancelled",
    (JobStatus.running, JobStatus.cancelled): "its sweep was cancelled; the worker stops at "
    "its next heartbeat",
}


def sources(to: JobStatus) -> tuple[str, ...]:
    """The states a job may be in to move to ``to`` (for a ``WHERE status IN (...)``)."""
    return tuple(frm.value for frm, dst in TRANSITIONS if dst == to)


_LEASE_CLEARED = {"lease_id": None, "lease_expires_at": None, "worker_id": None, "device": None,
                  "device_memory_mb": None, "started_at": None, "pack_id": None,
                  "lease_token_id": None}


def _entering(to: JobStatus, now: Any) -> dict[str, Any]:
    """The fields a job gets whenever it enters ``to`` (before the statement's own values).

    Queued again: no lease, worker, device, start or pack. Running: started now. Terminal:
    finished now and no lease expiry; the lease id stays, so a repeated complete/fail with it is
    a no-op and a cancelled job's worker is told ``cancelled`` at its next heartbeat.
    """
    if to == JobStatus.queued:
        return dict(_LEASE_CLEARED)
    if to == JobStatus.running:
        return {"started_at": now}
    return {"finished_at": now, "lease_expires_at": None}


def move(jobs: Table, to: JobStatus, *where: Any, now: Any, **values: Any) -> Update:
    """``UPDATE jobs SET status=to, <resets of entering to>, **values WHERE status IN sources(to)
    AND *where``: the one way a job changes state. ``now`` may be a bind parameter.

    The sources are spelled as ORs, not IN: an executemany (a pack claim) cannot expand IN lists.
    """
    return (
        update(jobs)
        .where(or_(*(jobs.c.status == source for source in sources(to))), *where)
        .values(status=to.value, **{**_entering(to, now), **values})
    )
