"""The words both sides of the wire share: job and sweep statuses, their active and terminal sets,
and token roles. Imports nothing, so the scheduler, the API, the worker and the CLI all read the
same definitions (the scheduler's transition rules live in ``scheduler.states``)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


#: Every job status, in lifecycle order (filters, pickers, counts).
JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
#: A job that may still run: it holds its sweep open.
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.queued, JobStatus.running})
#: A job that is done for good.
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
)


class SweepStatus(StrEnum):
    queued = "queued"
    running = "running"
    finished = "finished"
    cancelled = "cancelled"


class Role(StrEnum):
    """What an API token may do: ``admin`` everything, ``submitter`` its own sweeps, ``worker``
    claim and report jobs."""

    admin = "admin"
    submitter = "submitter"
    worker = "worker"


#: Every role, in the order help texts list them.
ROLES: tuple[Role, ...] = tuple(Role)
#: The roles that may submit and cancel sweeps.
WRITER_ROLES: tuple[Role, ...] = (Role.admin, Role.submitter)


class Outcome(StrEnum):
    """How a claimed job ended on its worker: the one word the job's process, the lease keeper,
    the spool and the client use. The first three name the job status it ends in (and the
    training library's ``JobResult.status``); ``lost`` (its lease became another's) and
    ``released`` (given back on drain: queued again at once) are the worker's own."""

    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"
    released = "released"


#: The outcomes a worker reports to the API (complete or fail); it already knows of the others.
REPORTED: frozenset[Outcome] = frozenset({Outcome.succeeded, Outcome.failed})
