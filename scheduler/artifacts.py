"""Trained adapters the service keeps: one zip per train job, the latest attempt's.

The lease holder uploads what ``tenslora.save_adapter`` wrote before it reports the result;
``scheduler.adapter_zip`` checks the zip and re-packs it with exactly the two adapter files, the
analysis goes to its own column. Only the attempt that succeeded is served, and once its job has
succeeded an adapter is never replaced: what was served stays what is served.

The zip itself is a file in the database's blob store (``scheduler.blob_store``), written before
the transaction that names it: an upload holds the write lock for one small row, never for the
time its bytes take to arrive or to reach the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, exists, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.adapter_zip import AdapterArchive
from scheduler.blob_store import session_store
from scheduler.errors import InvalidInput, NotFound
from scheduler.models import JOB_ADAPTERS, JOBS, Job, utcnow
from scheduler.queue import JobRecord, owned_job
from scheduler.upsert import upsert


@dataclass(frozen=True)
class StoredAdapter:
    job_id: int
    attempt: int
    size_bytes: int
    sha256: str
    uploaded_at: datetime
    #: Why the upload's ``adapter_analysis.json`` was left out (None: kept, or there was none).
    analysis_note: str | None = None


def upload_target(
    session: Session,
    job_id: int,
    lease_id: str,
    now: datetime | None = None,
    token_id: int | None = None,
) -> JobRecord:
    """The job an adapter upload with ``lease_id`` is for: its live lease, a train job. Else 404
    (no such job), 403 (another token's lease), 409 (not the live lease, or the job has ended:
    once a job has succeeded its adapter is never replaced), 422 (not a train job). Checked
    before the upload is read, and again when it is stored."""
    job = owned_job(session, job_id, lease_id, now, token_id, finished=(),
                    takes="adapter uploads (a succeeded job's adapter is never replaced)")
    if job.kind != "train":
        raise InvalidInput(f"job {job_id} is a {job.kind} job; only train jobs keep an adapter")
    return job


def store_adapter(
    session: Session,
    job_id: int,
    lease_id: str,
    upload: AdapterArchive,
    now: datetime | None = None,
    token_id: int | None = None,
) -> StoredAdapter:
    """Keep the adapter of the running job ``lease_id`` holds (``upload_target``); it replaces
    what an earlier attempt left. ``token_id``: the uploader's token, which must be the one that
    claimed the job (None skips that check).

    The zip is written to the blob store before this session's transaction (call it before
    the session writes anything); the replaced file is removed once the transaction has
    committed, and the new one if it rolls back."""
    store = session_store(session)
    name = store.put(upload.archive)
    try:
        stored, replaced = _name_adapter(session, job_id, lease_id, upload, name, now, token_id)
    except BaseException:
        store.remove(name)
        raise
    if replaced is not None:
        event.listen(session, "after_commit", lambda _s: store.remove(replaced), once=True)
    event.listen(session, "after_rollback", lambda _s: store.remove(name), once=True)
    return stored


def _name_adapter(
    session: Session,
    job_id: int,
    lease_id: str,
    upload: AdapterArchive,
    name: str,
    now: datetime | None,
    token_id: int | None,
) -> tuple[StoredAdapter, str | None]:
    now = now or utcnow()
    job = upload_target(session, job_id, lease_id, now, token_id)
    replaced = session.execute(
        select(JOB_ADAPTERS.c.file).where(JOB_ADAPTERS.c.job_id == job_id)
    ).scalar_one_or_none()
    values = {
        "job_id": job_id,
        "attempt": job.attempt,
        "file": name,
        "archive": None,
        "size_bytes": len(upload.archive),
        "sha256": upload.sha256,
        "analysis": upload.analysis,
        "uploaded_at": now,
    }
    upsert(session, JOB_ADAPTERS, values, key=["job_id"], updates=_replace_all)
    stored = StoredAdapter(job_id, job.attempt, len(upload.archive), upload.sha256, now,
                           upload.analysis_note)
    return stored, replaced


def get_adapter(session: Session, job_id: int) -> tuple[StoredAdapter, bytes]:
    """The succeeded attempt's adapter and its zip; NotFound saying why there is none."""
    row = session.execute(
        select(JOB_ADAPTERS).join(JOBS, JOBS.c.id == JOB_ADAPTERS.c.job_id).where(*_served(job_id))
    ).one_or_none()
    if row is None:
        raise NotFound(_why_none(session, job_id))
    stored = StoredAdapter(row.job_id, row.attempt, row.size_bytes, row.sha256, row.uploaded_at)
    # A succeeded job's file is never replaced or removed, so reading it needs no lock.
    archive = row.archive if row.file is None else session_store(session).read(row.file)
    return stored, archive


def get_analysis(session: Session, job_id: int) -> dict[str, Any] | None:
    """The mode analysis stored with the job's served adapter (None: uploaded without one)."""
    row = session.execute(
        select(JOB_ADAPTERS.c.analysis)
        .join(JOBS, JOBS.c.id == JOB_ADAPTERS.c.job_id)
        .where(*_served(job_id))
    ).one_or_none()
    if row is None:
        raise NotFound(_why_none(session, job_id))
    return row.analysis


def has_adapter() -> Any:
    """A condition on ``jobs`` rows: the job's current attempt left an adapter (for a succeeded
    job: one ``get_adapter`` serves)."""
    return exists().where(
        JOB_ADAPTERS.c.job_id == JOBS.c.id, JOB_ADAPTERS.c.attempt == JOBS.c.attempt
    )


def adapter_info(session: Session, job_id: int) -> StoredAdapter | None:
    """What ``get_adapter`` would serve, without the zip; None when it would answer 404."""
    row = session.execute(
        select(JOB_ADAPTERS.c.job_id, JOB_ADAPTERS.c.attempt, JOB_ADAPTERS.c.size_bytes,
               JOB_ADAPTERS.c.sha256, JOB_ADAPTERS.c.uploaded_at)
        .join(JOBS, JOBS.c.id == JOB_ADAPTERS.c.job_id)
        .where(*_served(job_id))
    ).one_or_none()
    return None if row is None else StoredAdapter(*row)


def _served(job_id: int) -> tuple[Any, ...]:
    return (
        JOB_ADAPTERS.c.job_id == job_id,
        JOBS.c.status == JobStatus.succeeded.value,
        JOB_ADAPTERS.c.attempt == JOBS.c.attempt,
    )


def _why_none(session: Session, job_id: int) -> str:
    job = session.get(Job, job_id)
    if job is None:
        return f"job {job_id} does not exist"
    if job.kind != "train":
        return f"job {job_id} is a {job.kind} job; only train jobs keep an adapter"
    if job.status != JobStatus.succeeded.value:
        return f"job {job_id} is {job.status}; only a succeeded train job has an adapter"
    return f"job {job_id} succeeded without an adapter (its upload was refused or never sent)"


def _replace_all(new: Any) -> dict[str, Any]:
    return {column.name: column for column in new if column.name != "job_id"}
