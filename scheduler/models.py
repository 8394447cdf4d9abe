"""SQLAlchemy 2 models of the scheduler database. ``migrations/`` must match these exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from protocol.vocabulary import JobStatus

NAME_LENGTH = 200

#: The id of a table that can pass 2^31 rows: bigint on Postgres, the rowid on SQLite.
RowId = BigInteger().with_variant(Integer(), "sqlite")

# jsonb on Postgres: it can be grouped and compared (results group by config paths).
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # The request as submitted (base, configs, grid), for provenance.
    definition: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    n_jobs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The token that submitted it: a submitter may cancel only its own sweeps. Null for sweeps
    # stored before owners were recorded (only an admin may cancel those).
    owner_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id"), nullable=True
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "spec_hash"),
        Index("ix_jobs_lease", "status", "lease_expires_at"),
        Index("ix_jobs_worker", "worker_id", "status"),
        Index("ix_jobs_shape", "shape_key", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed with its status by ix_jobs_sweep_status (below).
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"))
    spec_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    memory_estimate_mb: Mapped[int] = mapped_column(BigInteger)
    # Jobs of one shape share an observed memory peak (see scheduler.memory).
    shape_key: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    # Jobs with equal pack keys may train in one process (see tenslora.core.pack_key); a job that
    # ran in a pack keeps the pack's id.
    pack_key: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    pack_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    lease_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The token that claimed the live lease: only it may heartbeat, report or release. No foreign
    # key: the jobs table is the big, hot one, and SQLite can only add one by copying the table.
    lease_token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    device: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    # What the claim declared the device holds (else the memory it offered): a reported peak
    # above it is refused (scheduler.memory.check_peak).
    device_memory_mb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


# The claim reads queued jobs by priority (highest first) then age: the index has that order, so
# the next job is its first entry (an ascending priority made SQLite sort every queued job of the
# top priority on each claim).
Index("ix_jobs_claim_order", Job.status, Job.priority.desc(), Job.id)
# The claim skips estimates that do not fit: per distinct estimate, its first job in the claim's
# order is one seek (see scheduler.queue._fitting_heads).
Index("ix_jobs_fit", Job.status, Job.memory_estimate_mb, Job.priority.desc(), Job.id)
# A sweep's results read its succeeded jobs, then their result values by primary key: never the
# values (or the succeeded jobs) of every other sweep the lab ever ran.
Index("ix_jobs_sweep_status", Job.sweep_id, Job.status, Job.id)
# A pack claim takes the next jobs of one pack key in the claim's order.
Index("ix_jobs_pack_order", Job.pack_key, Job.status, Job.priority.desc(), Job.id)

class ResultValue(Base):
    """One numeric entry of a job's result, so results aggregate in SQL."""

    __tablename__ = "result_values"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobAdapter(Base):
    """A train job's adapter: the zip of ``tenslora.save_adapter``'s two files, one per job.

    Written by the holder of the job's live lease before it reports the result; a later attempt's
    upload replaces an earlier one, and only the attempt that succeeded is served.
    """

    __tablename__ = "job_adapters"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    # The zip's file in the blob store (scheduler.blob_store); adapters uploaded before
    # migration 0010 keep their zip in ``archive`` instead.
    file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archive: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # adapter_mode_spectra's JSON when the worker computed it (None otherwise).
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, nullable=True)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Metric(Base):
    """A point of a job's training curve (loss, lr, per-mode gradient norm ...)."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_job_name_step", "job_id", "name", "step"),)

    # Every training step of every job adds rows: a lab passes 2^31 points, so 64-bit on
    # Postgres (SQLite's INTEGER PRIMARY KEY is the 64-bit rowid already, and must stay INTEGER
    # to keep its autoincrement).
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # None stands for a non-finite value (a diverged loss): not every backend stores NaN.
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class ObservedMemory(Base):
    """The largest peak memory reported by a finished job of one shape."""

    __tablename__ = "observed_memory"

    shape_key: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    peak_memory_mb: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """A worker as last seen by a claim or a heartbeat."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    device: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    free_memory_mb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored. A revoked token stays, marked, for the record."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The admin token that minted it over the API; null when made on the host (`token create`).
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id"), nullable=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DashboardSession(Base):
    """A signed-in browser: the cookie holds a random id, the database only its SHA-256."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# Core handles of the tables, for hot statements that skip the ORM's per-object work.
JOBS: Table = Job.__table__  # type: ignore[assignment]
WORKERS: Table = Worker.__table__  # type: ignore[assignment]
RESULT_VALUES: Table = ResultValue.__table__  # type: ignore[assignment]
METRICS: Table = Metric.__table__  # type: ignore[assignment]
OBSERVED_MEMORY: Table = ObservedMemory.__table__  # type: ignore[assignment]
JOB_ADAPTERS: Table = JobAdapter.__table__  # type: ignore[assignment]
