"""Job states and the ONE table of allowed transitions.

Every statement that changes ``jobs.status`` filters on ``sources(to)``, so a transition that is not
listed here cannot happen, whatever the route or the race.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
)

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


def allowed(frm: JobStatus | str, to: JobStatus | str) -> bool:
    return (JobStatus(frm), JobStatus(to)) in TRANSITIONS
