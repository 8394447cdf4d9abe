"""The worker side of the queue: claim, heartbeat, complete, fail, release, reap.

A job is owned by whoever holds its live lease: status ``running``, the same ``lease_id``, not
expired, claimed by the same token (``token_id``; None skips that check, for in-process callers).
Every state change below is one UPDATE built by ``states.move`` (allowed sources and field resets
of the transition in one place).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import Conflict, Forbidden, NotFound
from scheduler.limits import Limits, check_count, check_names, truncate_text
from scheduler.memory import check_peak, pack_share_mb, record_peak, share_key
from scheduler.models import JOBS, RESULT_VALUES, WORKERS, Job, utcnow
from scheduler.states import move
from scheduler.upsert import upsert
from tenslora.core.finite import finite_json
from tenslora.core.job_spec import TrainSpec, parse_spec

# A job as an ORM object or as a row of the jobs table: both have one attribute per column.
JobRecord = Job | Row[Any]


@dataclass(frozen=True)
class Claim:
    job: JobRecord
    lease_id: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Heartbeat:
    cancelled: bool
    lease_expires_at: datetime | None


def record_worker(
    session: Session,
    worker_id: str,
    now: datetime,
    device: str | None = None,
    free_memory_mb: int | None = None,
) -> None:
    """Upsert the worker's row; fields it did not send keep their last value."""
    values: dict[str, Any] = {"worker_id": worker_id, "last_seen_at": now}
    if device is not None:
        values["device"] = device
    if free_memory_mb is not None:
        values["free_memory_mb"] = free_memory_mb
    upsert(session, WORKERS, values, key=["worker_id"], updates=_take_new_values)


def _take_new_values(new: Any) -> dict[str, Any]:
    return {column.name: column for column in new if column.name != "worker_id"}


_QUEUED = JOBS.c.status == JobStatus.queued.value
_FITS = JOBS.c.memory_estimate_mb <= bindparam("b_free")


def _fitting_heads() -> Any:
    """Ids of the first queued job (claim order) of each distinct memory estimate that fits
    ``:b_free``.

    Each step is one seek on ``ix_jobs_fit`` (status, estimate, priority desc, id): the next
    larger estimate, then its first job. The cost grows with the number of distinct estimates
    that fit, never with the number of queued jobs that do not (100k of those made every claim
    walk them in the claim order). On Postgres each head is locked (SKIP LOCKED) until the
    claim commits, so racing claimers see each estimate's next job instead; a head is None
    when racers hold all of its estimate's jobs.
    """
    inner = JOBS.alias("later")
    inner_queued = inner.c.status == JobStatus.queued.value
    estimates = (
        select(func.min(JOBS.c.memory_estimate_mb).label("mb")).where(_QUEUED)
        .cte("fitting_estimates", recursive=True)
    )
    larger = (
        select(func.min(inner.c.memory_estimate_mb))
        .where(inner_queued, inner.c.memory_estimate_mb > estimates.c.mb)
        .scalar_subquery()
    )
    estimates = estimates.union_all(select(larger).where(estimates.c.mb <= bindparam("b_free")))
    head = (
        select(inner.c.id)
        .where(inner_queued, inner.c.memory_estimate_mb == estimates.c.mb)
        .order_by(inner.c.priority.desc(), inner.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return select(head).where(estimates.c.mb <= bindparam("b_free"))


_HEADS = _fitting_heads()


def next_fitting_job(*columns: Any, narrowed: tuple[Any, ...] = (), heads: bool = False) -> Any:
    """``columns`` of the highest-priority, oldest queued job whose memory estimate fits
    ``:b_free``, locked (SKIP LOCKED: racing claimers pick different rows).

    ``heads``: only among the ids bound to ``:b_heads`` (``_fitting_heads``; see
    ``first_fitting``), looked up by primary key; otherwise the queue is read in the claim order.
    """
    among = (JOBS.c.id.in_(bindparam("b_heads", expanding=True)),) if heads else ()
    return (
        select(*columns)
        .where(_QUEUED, _FITS, *among, *narrowed)
        .order_by(JOBS.c.priority.desc(), JOBS.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def first_fitting(session: Session, statement: Any, scan: Any, params: dict[str, Any]) -> Any:
    """The row ``statement`` (built on ``next_fitting_job(heads=True)``) returns for the heads of
    the fitting estimates; None at once when no queued job fits.

    When racing claimers hold every head (Postgres; SQLite claimers run one at a time),
    ``scan`` (the same without ``heads``) takes any fitting job instead.
    """
    heads = [head for head in session.scalars(_HEADS, params) if head is not None]
    if not heads:
        return None
    row = session.execute(statement, {**params, "b_heads": heads}).one_or_none()
    if row is None:
        row = session.execute(scan, params).one_or_none()
    return row


# What every claim (single or pack) writes into the job it takes, bound per claim.
CLAIM_VALUES: dict[str, Any] = {
    "now": bindparam("b_now"),
    "lease_id": bindparam("b_lease"),
    "lease_expires_at": bindparam("b_expires"),
    "worker_id": bindparam("b_worker"),
    "device": bindparam("b_device"),
    "device_memory_mb": bindparam("b_device_memory"),
    "lease_token_id": bindparam("b_token"),
}


# Built once: the claim is the hot path, and building a statement costs more than running it.
def _claim_statement(*narrowed: Any, heads: bool = False) -> Any:
    next_job = next_fitting_job(JOBS.c.id, narrowed=narrowed, heads=heads).cte("next_job")
    # ``=`` on the one id, not ``IN``: SQLite then updates by primary key instead of walking an
    # index on status.
    return move(
        JOBS, JobStatus.running, JOBS.c.id == select(next_job.c.id).scalar_subquery(),
        **CLAIM_VALUES,
    ).returning(*JOBS.c)


_CLAIM = _claim_statement(heads=True)
_CLAIM_SCAN = _claim_statement()
# A Ray Tune trial claims the one job it was made for (``tenslora sweep tune``).
_CLAIM_ONE = _claim_statement(JOBS.c.id == bindparam("b_job"))
_EXPIRED = (
    select(JOBS.c.id, JOBS.c.attempt)
    .where(JOBS.c.status == JobStatus.running.value, JOBS.c.lease_expires_at < bindparam("b_now"))
    .with_for_update(skip_locked=True)
)


def claim_job(
    session: Session,
    worker_id: str,
    device: str | None,
    free_memory_mb: int,
    lease_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
    job_id: int | None = None,
    reap: bool = True,
    token_id: int | None = None,
    device_memory_mb: int | None = None,
) -> Claim | None:
    """Hand the highest-priority, oldest queued job that fits ``free_memory_mb`` to one worker.

    ``job_id`` narrows the choice to that one job (``tenslora sweep tune``: each Ray Tune trial
    runs the job it was made for). ``reap``: requeue expired leases first (the server does it at
    most once a second per process; its background reaper covers the rest).
    ``device_memory_mb``: the device's whole memory, the most a peak of the job may be (default
    ``free_memory_mb``).

    Postgres: the CTE locks the chosen row with SKIP LOCKED, so racing claimers pick different
    rows. SQLite: the session began with BEGIN IMMEDIATE, so claimers run one at a time.
    """
    now = now or utcnow()
    if reap:
        reap_expired(session, max_attempts, now)
    record_worker(session, worker_id, now, device, free_memory_mb)
    lease_id, expires = uuid.uuid4().hex, now + timedelta(seconds=lease_seconds)
    params = {
        "b_job": job_id,
        "b_free": free_memory_mb,
        "b_lease": lease_id,
        "b_expires": expires,
        "b_worker": worker_id,
        "b_device": device,
        "b_device_memory": device_memory_mb or free_memory_mb,
        "b_now": now,
        "b_token": token_id,
    }
    if job_id is None:
        job = first_fitting(session, _CLAIM, _CLAIM_SCAN, params)
    else:
        job = session.execute(_CLAIM_ONE, params).one_or_none()
    return Claim(job, lease_id, expires) if job is not None else None


def reap_expired(session: Session, max_attempts: int, now: datetime | None = None) -> int:
    """Requeue running jobs whose lease expired (attempt + 1), or fail them at the last attempt."""
    now = now or utcnow()
    expired = session.execute(_EXPIRED, {"b_now": now}).all()
    retry = [job_id for job_id, attempt in expired if attempt < max_attempts]
    give_up = [job_id for job_id, attempt in expired if attempt >= max_attempts]
    if retry:
        session.execute(
            move(JOBS, JobStatus.queued, JOBS.c.id.in_(retry), now=now,
                 attempt=JOBS.c.attempt + 1)
        )
    if give_up:
        # No worker holds it any more: its lease id goes too.
        session.execute(
            move(JOBS, JobStatus.failed, JOBS.c.id.in_(give_up), now=now, lease_id=None,
                 error=f"lease expired on the last of {max_attempts} attempts")
        )
    return len(expired)


def _live(job_id: int, lease_id: str, now: datetime, token_id: int | None) -> Any:
    conditions = [
        JOBS.c.id == job_id,
        JOBS.c.lease_id == lease_id,
        JOBS.c.status == JobStatus.running.value,
        JOBS.c.lease_expires_at >= now,
    ]
    if token_id is not None:
        # A lease taken before owners were recorded (null) stays usable until it ends.
        conditions.append(func.coalesce(JOBS.c.lease_token_id, token_id) == token_id)
    return tuple(conditions)


def _refuse(session: Session, job_id: int, lease_id: str, token_id: int | None) -> Job:
    """Explain why ``lease_id`` does not own ``job_id``: 404, 403 (another token's lease), or
    409 with the job's state.

    Returns the job when the lease was the job's last one and it is now finished or cancelled,
    which callers treat as a repeated (no-op) request.
    """
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    if job.lease_id == lease_id and token_id is not None and job.lease_token_id not in (
        None,
        token_id,
    ):
        raise Forbidden(f"lease {lease_id} of job {job_id} was claimed by another token")
    if job.lease_id == lease_id and job.status != JobStatus.running.value:
        return job
    if job.lease_id == lease_id:
        raise Conflict(f"lease {lease_id} of job {job_id} expired; the job will be requeued")
    raise Conflict(
        f"lease {lease_id} is not the live lease of job {job_id} (the job is {job.status}, "
        f"attempt {job.attempt}); stop working on it"
    )


def heartbeat(
    session: Session,
    job_id: int,
    lease_id: str,
    lease_seconds: float,
    now: datetime | None = None,
    token_id: int | None = None,
) -> Heartbeat:
    """Extend the lease; ``cancelled`` tells the worker to stop (its sweep was cancelled)."""
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    worker_id = session.scalar(
        update(JOBS)
        .where(*_live(job_id, lease_id, now, token_id))
        .values(lease_expires_at=expires)
        .returning(JOBS.c.worker_id)
    )
    if worker_id is not None:
        record_worker(session, worker_id, now)
        return Heartbeat(cancelled=False, lease_expires_at=expires)
    job = _refuse(session, job_id, lease_id, token_id)
    if job.status == JobStatus.cancelled.value:
        return Heartbeat(cancelled=True, lease_expires_at=None)
    raise Conflict(f"job {job_id} is already {job.status}; nothing to heartbeat")


def _finish(
    session: Session,
    job_id: int,
    lease_id: str,
    to: JobStatus,
    values: dict[str, Any],
    now: datetime,
    token_id: int | None,
) -> tuple[JobRecord, bool]:
    """Move an owned job to ``to``: (job, changed). A repeat with the same lease is a no-op."""
    row = session.execute(
        move(JOBS, to, *_live(job_id, lease_id, now, token_id), now=now, **values)
        .returning(*JOBS.c)
    ).one_or_none()
    if row is not None:
        return row, True
    job = _refuse(session, job_id, lease_id, token_id)
    if job.status in (to.value, JobStatus.cancelled.value):
        return job, False
    raise Conflict(f"job {job_id} is already {job.status} with this lease; it cannot become {to}")


def complete_job(
    session: Session,
    job_id: int,
    lease_id: str,
    result: dict[str, Any],
    now: datetime | None = None,
    token_id: int | None = None,
    limits: Limits | None = None,
) -> JobRecord:
    """Store the result once; a second complete with the same lease returns the stored job.

    ``InvalidInput`` (nothing stored) for a result over ``limits``: too many entries, or an entry
    name too long; or for a ``peak_memory_mb`` no device could have shown (``check_peak``: one
    bad report would otherwise raise its shape's estimate for good).
    """
    now = now or utcnow()
    limits = limits or Limits()
    if "peak_memory_mb" in result:
        # Only a live lease's report is checked: any other gets its 404 / 409 (or no-op) below.
        live = session.execute(
            select(JOBS.c.device_memory_mb).where(*_live(job_id, lease_id, now, token_id))
        ).first()
        if live is not None:
            check_peak(result["peak_memory_mb"], live.device_memory_mb)
    result = finite_json(result)
    check_count("result", len(result), limits.result_entries)
    values = numeric_entries(result)
    check_count("result (numbers, nested ones included)", len(values), limits.result_entries)
    check_names("result entry", values, limits.metric_name_length)
    job, changed = _finish(
        session, job_id, lease_id, JobStatus.succeeded, {"result": result}, now, token_id
    )
    if changed:
        if values:
            session.execute(
                insert(RESULT_VALUES),
                [
                    {"job_id": job.id, "name": name, "value": value}
                    for name, value in values.items()
                ],
            )
        peak = result.get("peak_memory_mb")
        if job.shape_key and isinstance(peak, int | float) and not isinstance(peak, bool):
            _record_observed_peak(session, job, int(peak), now)
    return job


def _record_observed_peak(session: Session, job: JobRecord, peak_mb: int, now: datetime) -> None:
    """A job that ran alone teaches its shape's peak; one of a pack, its shape's pack share."""
    key: str | None = job.shape_key
    if key is None:
        return
    if job.pack_id is None:
        record_peak(session, key, peak_mb, now)
        return
    pack_size = session.scalar(select(func.count()).where(JOBS.c.pack_id == job.pack_id)) or 1
    spec = parse_spec(job.config)
    if isinstance(spec, TrainSpec):
        share = pack_share_mb(spec, peak_mb, pack_size)
        record_peak(session, share_key(key), share, now)


def fail_job(
    session: Session,
    job_id: int,
    lease_id: str,
    error: str,
    now: datetime | None = None,
    token_id: int | None = None,
    limits: Limits | None = None,
) -> JobRecord:
    """A failure the worker saw (exception, OOM, ``fail: true``) is final: no retry.

    An error text over ``limits.error_bytes`` is kept truncated (a traceback's tail may be long;
    refusing it would lose the failure).
    """
    now = now or utcnow()
    error = truncate_text(error, (limits or Limits()).error_bytes)
    job, _ = _finish(
        session, job_id, lease_id, JobStatus.failed, {"error": error}, now, token_id
    )
    return job


def release_job(
    session: Session,
    job_id: int,
    lease_id: str,
    now: datetime | None = None,
    token_id: int | None = None,
) -> JobRecord:
    """Give the lease back (a worker draining on SIGTERM): queued again, attempt unchanged."""
    now = now or utcnow()
    row = session.execute(
        move(
            JOBS, JobStatus.queued, *_live(job_id, lease_id, now, token_id), now=now
        ).returning(*JOBS.c)
    ).one_or_none()
    if row is not None:
        return row
    job = _refuse(session, job_id, lease_id, token_id)
    if job.status == JobStatus.cancelled.value:
        return job
    raise Conflict(f"job {job_id} is already {job.status}; there is nothing to release")


def owned_job(
    session: Session,
    job_id: int,
    lease_id: str,
    now: datetime | None = None,
    token_id: int | None = None,
    *,
    takes: str = "metrics",
    finished: tuple[JobStatus, ...] = (JobStatus.cancelled,),
) -> JobRecord:
    """The job if ``lease_id`` is its live lease, or was its last lease and the job is now in one
    of ``finished``; else 404, or 409 saying it takes no more ``takes``."""
    now = now or utcnow()
    row = session.execute(
        select(JOBS).where(*_live(job_id, lease_id, now, token_id))
    ).one_or_none()
    if row is not None:
        return row
    job = _refuse(session, job_id, lease_id, token_id)
    if job.status in {status.value for status in finished}:
        return job
    raise Conflict(f"job {job_id} is already {job.status}; it takes no more {takes}")


def numeric_entries(result: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numbers of a result, nested objects flattened to dotted names (two levels deep)."""
    entries: dict[str, float] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            entries[name] = float(value)
        elif isinstance(value, dict) and depth < 2:
            entries.update(numeric_entries(value, f"{name}.", depth + 1))
    return entries
