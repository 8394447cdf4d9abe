"""Claim a pack: up to k queued jobs of one pack key, each with its own lease, in one transaction.

A pack trains its jobs in one process over one frozen backbone (``tenslora.training.run_pack``),
so its memory is the backbone once plus a share per job (``scheduler.memory.pack_memory_mb``).
Jobs without a pack key (synthetic ones) are handed out alone, as the single-job claim would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.memory import observed_peaks, pack_memory_mb, shape_key, share_key
from scheduler.models import JOBS, utcnow
from scheduler.queue import (
    CLAIM_VALUES,
    Claim,
    first_fitting,
    next_fitting_job,
    reap_expired,
    record_worker,
)
from scheduler.states import move
from tenslora.core.job_spec import TrainSpec, parse_spec

_NEXT_FIT = next_fitting_job(JOBS.c.id, JOBS.c.pack_key, JOBS.c.config, heads=True)
_NEXT_FIT_SCAN = next_fitting_job(JOBS.c.id, JOBS.c.pack_key, JOBS.c.config)
_SAME_KEY = (
    select(JOBS.c.id)
    .where(
        JOBS.c.status == JobStatus.queued.value,
        JOBS.c.pack_key == bindparam("b_key"),
        JOBS.c.id != bindparam("b_first"),
    )
    .order_by(JOBS.c.priority.desc(), JOBS.c.id)
    .limit(bindparam("b_more"))
    .with_for_update(skip_locked=True)
)
_TAKE = move(
    JOBS, JobStatus.running, JOBS.c.id == bindparam("b_id"), **CLAIM_VALUES,
    pack_id=bindparam("b_pack"),
)


@dataclass(frozen=True)
class PackClaim:
    pack_id: str | None  # None when only one job was handed out
    claims: list[Claim]
    memory_estimate_mb: int  # the pack's: the backbone once plus a share per job


def _pack_memory(session: Session, spec: TrainSpec) -> tuple[int, int]:
    key = shape_key(spec)
    return pack_memory_mb(spec, observed_peaks(session, [share_key(key)]) if key else {})


def claim_pack(
    session: Session,
    worker_id: str,
    device: str | None,
    free_memory_mb: int,
    max_jobs: int,
    lease_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
    reap: bool = True,
    token_id: int | None = None,
    device_memory_mb: int | None = None,
) -> PackClaim | None:
    """The highest-priority queued job that fits, and up to ``max_jobs - 1`` more of its pack key.

    The first job is chosen as the single-job claim chooses; the others follow it in the claim's
    order (priority, then age) while the pack's memory (backbone once, a share per job) fits.
    Postgres locks the rows with SKIP LOCKED; SQLite runs claimers one at a time (BEGIN
    IMMEDIATE). ``token_id``: the claiming token, which alone may use the leases.
    ``device_memory_mb``: as for ``queue.claim_job``.
    """
    now = now or utcnow()
    if reap:
        reap_expired(session, max_attempts, now)
    record_worker(session, worker_id, now, device, free_memory_mb)
    first = first_fitting(session, _NEXT_FIT, _NEXT_FIT_SCAN, {"b_free": free_memory_mb})
    if first is None:
        return None
    ids = [first.id]
    base_mb = share_mb = 0
    if first.pack_key is not None and max_jobs > 1:
        spec = parse_spec(first.config)
        assert isinstance(spec, TrainSpec)  # only train jobs have a pack key
        base_mb, share_mb = _pack_memory(session, spec)
        more = min(max_jobs, (free_memory_mb - base_mb) // share_mb) - 1
        if more > 0:
            ids += session.scalars(
                _SAME_KEY, {"b_key": first.pack_key, "b_first": first.id, "b_more": more}
            ).all()
    pack_id = uuid.uuid4().hex if len(ids) > 1 else None
    expires = now + timedelta(seconds=lease_seconds)
    leases = {job_id: uuid.uuid4().hex for job_id in ids}
    common: dict[str, Any] = {
        "b_expires": expires, "b_worker": worker_id, "b_device": device, "b_now": now,
        "b_pack": pack_id, "b_token": token_id,
        "b_device_memory": device_memory_mb or free_memory_mb,
    }
    session.execute(
        _TAKE, [{"b_id": job_id, "b_lease": lease, **common} for job_id, lease in leases.items()]
    )
    rows = session.execute(
        select(JOBS)
        .where(JOBS.c.id.in_(ids))
        .order_by(JOBS.c.priority.desc(), JOBS.c.id)
    ).all()
    claims = [Claim(row, leases[row.id], expires) for row in rows if row.lease_id == leases[row.id]]
    if not claims:
        return None
    if len(claims) == 1:
        return PackClaim(None, claims, claims[0].job.memory_estimate_mb)
    return PackClaim(pack_id, claims, base_mb + share_mb * len(claims))
