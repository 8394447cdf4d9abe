"""Trained adapters the service keeps: one zip per train job, the latest attempt's.

The lease holder uploads what ``tenslora.save_adapter`` wrote (``adapter_model.safetensors`` +
``adapter_config.json``, optionally ``adapter_analysis.json``, the mode analysis) before it
reports the result. The archive is checked without torch (a zip holding both files, the config
JSON with its ``config`` and ``backbone`` entries, the weights a safetensors file) and stored
re-packed with exactly the two files; the analysis goes to its own column. Both the zip and its
unpacked files must fit ``TENSLORA_MAX_ADAPTER_MB``, so a small zip cannot unpack into gigabytes.
Only the attempt that succeeded is served.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import InvalidInput, NotFound, TooLarge
from scheduler.models import JOB_ADAPTERS, JOBS, Job, utcnow
from scheduler.queue import owned_job
from scheduler.upsert import upsert
from tenslora.core.archive import ADAPTER_FILES, pack_adapter
from tenslora.core.finite import finite_json
from tenslora.core.metric_contract import (
    ADAPTER_ANALYSIS_FILE,
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
)

LIMIT_SETTING = "TENSLORA_MAX_ADAPTER_MB"


@dataclass(frozen=True)
class AdapterArchive:
    """A checked upload: the zip to store and serve, and the analysis it carried."""

    archive: bytes
    analysis: dict[str, Any] | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()


@dataclass(frozen=True)
class StoredAdapter:
    job_id: int
    attempt: int
    size_bytes: int
    sha256: str
    uploaded_at: datetime


def limit_bytes(max_adapter_mb: float) -> int:
    return int(max_adapter_mb * 1024 * 1024)


def too_large(size: int | None, max_bytes: int, what: str = "the adapter upload") -> TooLarge:
    """413 naming the size (``None``: not known, only that it is over the limit)."""
    measured = "over the limit" if size is None else f"{size / 2**20:.2f} MiB"
    return TooLarge(
        f"{what} is {measured}; this service keeps adapters up to "
        f"{max_bytes / 2**20:.2f} MiB ({LIMIT_SETTING}). The job's result is kept without it."
    )


def read_archive(data: bytes, max_bytes: int) -> AdapterArchive:
    """Check an uploaded zip and re-pack it with exactly the two adapter files."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = {
            posixpath.basename(info.filename): info
            for info in archive.infolist()
            if not info.is_dir()
        }
    except (zipfile.BadZipFile, ValueError):
        raise InvalidInput(_expected("the body is not a zip archive")) from None
    missing = [name for name in ADAPTER_FILES if name not in entries]
    if missing:
        raise InvalidInput(_expected(f"the zip lacks {', '.join(missing)}"))
    wanted = [n for n in (*ADAPTER_FILES, ADAPTER_ANALYSIS_FILE) if n in entries]
    unpacked = sum(entries[name].file_size for name in wanted)
    if unpacked > max_bytes:
        raise too_large(unpacked, max_bytes, "the unpacked adapter")
    files = {name: _read(archive, entries[name], max_bytes) for name in wanted}
    _check_config(files[ADAPTER_CONFIG_FILE])
    _check_safetensors(files[ADAPTER_WEIGHTS_FILE])
    analysis = None
    if ADAPTER_ANALYSIS_FILE in files:
        # NaN (an all-zero tensor's statistics) as null: Postgres' jsonb holds no NaN.
        analysis = finite_json(_json_object(files[ADAPTER_ANALYSIS_FILE], ADAPTER_ANALYSIS_FILE))
    served = {name: files[name] for name in ADAPTER_FILES}
    return AdapterArchive(pack_adapter(served), analysis)


def store_adapter(
    session: Session,
    job_id: int,
    lease_id: str,
    upload: AdapterArchive,
    now: datetime | None = None,
    token_id: int | None = None,
) -> StoredAdapter:
    """Keep the adapter of the job ``lease_id`` holds (or held, if the job has since succeeded
    with it: a resent report); it replaces what an earlier attempt left. ``token_id``: the
    uploader's token, which must be the one that claimed the job (None skips that check)."""
    now = now or utcnow()
    job = owned_job(
        session, job_id, lease_id, now, token_id, takes="adapter", finished=(JobStatus.succeeded,)
    )
    if job.kind != "train":
        raise InvalidInput(f"job {job_id} is a {job.kind} job; only train jobs keep an adapter")
    values = {
        "job_id": job_id,
        "attempt": job.attempt,
        "archive": upload.archive,
        "size_bytes": len(upload.archive),
        "sha256": upload.sha256,
        "analysis": upload.analysis,
        "uploaded_at": now,
    }
    upsert(session, JOB_ADAPTERS, values, key=["job_id"], updates=_replace_all)
    return StoredAdapter(job_id, job.attempt, len(upload.archive), upload.sha256, now)


def get_adapter(session: Session, job_id: int) -> tuple[StoredAdapter, bytes]:
    """The succeeded attempt's adapter and its zip; NotFound saying why there is none."""
    row = session.execute(
        select(JOB_ADAPTERS).join(JOBS, JOBS.c.id == JOB_ADAPTERS.c.job_id).where(*_served(job_id))
    ).one_or_none()
    if row is None:
        raise NotFound(_why_none(session, job_id))
    stored = StoredAdapter(row.job_id, row.attempt, row.size_bytes, row.sha256, row.uploaded_at)
    return stored, row.archive


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


def _expected(problem: str) -> str:
    return (
        f"{problem}; upload a zip holding {ADAPTER_WEIGHTS_FILE} and {ADAPTER_CONFIG_FILE} "
        "(the folder tenslora.save_adapter writes)"
    )


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    # The sizes in a zip's directory are the uploader's word: read no more than the limit.
    try:
        with archive.open(info) as member:
            data = member.read(max_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        raise InvalidInput(_expected(f"{info.filename} cannot be unpacked ({error})")) from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes, "the unpacked adapter")
    return data


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(_expected(f"{name} is not valid JSON")) from None
    if not isinstance(value, dict):
        raise InvalidInput(_expected(f"{name} must hold a JSON object"))
    return value


def _check_config(data: bytes) -> None:
    config = _json_object(data, ADAPTER_CONFIG_FILE)
    if not isinstance(config.get("config"), dict) or not isinstance(config.get("backbone"), dict):
        raise InvalidInput(_expected(f"{ADAPTER_CONFIG_FILE} lacks its 'config' and 'backbone'"))


def _check_safetensors(data: bytes) -> None:
    """A safetensors file starts with the length of its JSON header (8 bytes, little-endian)."""
    header_length = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < header_length <= len(data) - 8:
        raise InvalidInput(_expected(f"{ADAPTER_WEIGHTS_FILE} is not a safetensors file"))
    _json_object(data[8 : 8 + header_length], f"the header of {ADAPTER_WEIGHTS_FILE}")
