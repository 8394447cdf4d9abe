"""Request and response models of the HTTP API, defined once: the routes of `api/` and the one
client (`protocol.client`) both use them. No FastAPI, SQLAlchemy or torch here, so a worker or
the CLI imports them for free."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from typing_extensions import TypeAliasType

from protocol.vocabulary import JobStatus, Role, SweepStatus
from tenslora.core.job_spec import spec_paths

# No NUL characters: Postgres text cannot hold them.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
LeaseId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
MAX_MEMORY_MB = 10**12
MAX_STEP = 2**53 - 1  # the largest integer a float64 (and so any JSON reader) holds exactly
MAX_PACK_JOBS = 64
MAX_PAGE = 1000  # the largest page of /sweeps and /jobs
#: p-values below this are marked significant by the CLI, the dashboard and the exports.
SIGNIFICANT_P = 0.05


# Text of a free-form document (a spec, a result): no NUL either. ``api.body_check`` refuses the
# rest of what no schema can say (lone surrogates, depth, numbers beyond a float64) for every body.
# (An alias, so the schema names it: dict keys then get ``propertyNames``, which forbids.)
JsonText = TypeAliasType("JsonText", Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")])
JsonValue = TypeAliasType(
    "JsonValue",
    "JsonText | int | float | bool | list[JsonValue] | dict[JsonText, JsonValue] | None",
)
JsonObject = dict[JsonText, JsonValue]


class Strict(BaseModel):
    """A request body: no unknown fields, and no coercion (``false`` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        """JSON Schema's integer: ``40.0`` is one (a JSON writer may put it so)."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class SweepCreate(Strict):
    name: Name
    base: JsonObject = Field(description="a partial job spec every job starts from")
    configs: list[JsonObject] | None = Field(
        None, min_length=1,
        description="partial specs, each deep-merged onto base (just base when absent)",
    )
    grid: dict[JsonText, Annotated[list[JsonValue], Field(min_length=1)]] | None = Field(
        None, description='dotted path -> values, e.g. {"optim.lr": [1e-4, 5e-4]}'
    )
    priority: int = Field(0, ge=-1_000_000, le=1_000_000, description="higher runs first")


class SweepOut(BaseModel):
    id: int
    name: str
    priority: int
    n_jobs: int
    status: SweepStatus
    counts: dict[JobStatus, int] = Field(description="jobs by status")
    created_at: datetime
    cancelled_at: datetime | None


class SweepList(BaseModel):
    items: list[SweepOut]
    total: int


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sweep_id: int
    status: JobStatus
    attempt: int
    kind: str
    config: dict[str, Any]
    spec_hash: str
    priority: int
    memory_estimate_mb: int
    pack_key: str | None = Field(
        None, description="train jobs with equal keys may train in one pack; null: never packs"
    )
    pack_id: str | None = Field(None, description="the pack the job ran in; null: it ran alone")
    device: str | None
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class JobList(BaseModel):
    items: list[JobOut]
    total: int


# What a claim may say about its device's whole memory (ClaimRequest, ClaimPackRequest).
DeviceMemory = Annotated[int | None, Field(
    ge=1, le=MAX_MEMORY_MB,
    description="the whole memory of the device the jobs run in, in MiB (the host's RAM for CPU "
    "slots and fake GPUs, whose jobs run on the CPU): a result whose peak_memory_mb is above "
    "it is refused; default: free_memory_mb",
)]


class ClaimRequest(Strict):
    worker_id: Name
    device: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] | None = None
    free_memory_mb: int = Field(ge=0, le=MAX_MEMORY_MB)
    device_memory_mb: DeviceMemory = None
    job_id: int | None = Field(
        None, ge=1, le=2**31 - 1,
        description="claim exactly this queued job, or nothing (a Ray Tune trial runs its own job)",
    )


class ClaimResponse(BaseModel):
    job: JobOut
    lease_id: str
    lease_expires_at: datetime


class ClaimPackRequest(Strict):
    worker_id: Name
    device: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] | None = None
    free_memory_mb: int = Field(ge=0, le=MAX_MEMORY_MB)
    device_memory_mb: DeviceMemory = None
    max_jobs: int = Field(
        ge=1, le=MAX_PACK_JOBS, description="the most jobs of one pack key to hand out"
    )


class ClaimPackResponse(BaseModel):
    pack_id: str | None = Field(description="shared by the pack's jobs; null for a single job")
    claims: list[ClaimResponse] = Field(description="1 to max_jobs jobs, in priority order")
    memory_estimate_mb: int = Field(
        description="what the pack is expected to hold: the backbone once plus a share per job"
    )


class LeaseRequest(Strict):
    lease_id: LeaseId


class HeartbeatResponse(BaseModel):
    cancelled: bool = Field(description="the job's sweep was cancelled: stop and release nothing")
    lease_expires_at: datetime | None


class MetricPointIn(Strict):
    step: int = Field(ge=0, le=MAX_STEP)
    name: Name
    value: float | None = Field(description="non-finite values are stored as null")


class MetricsRequest(Strict):
    lease_id: LeaseId
    points: list[MetricPointIn] = Field(max_length=10_000)


class MetricsStored(BaseModel):
    stored: int


class MetricPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    name: str
    value: float | None


class MetricsOut(BaseModel):
    points: list[MetricPointOut]


class CompleteRequest(Strict):
    lease_id: LeaseId
    result: JsonObject = Field(
        default_factory=dict,
        description="metrics and facts of the run, e.g. peak_memory_mb: a positive number of MiB "
        "at most the device_memory_mb of the job's claim (422 otherwise, nothing stored)",
    )


class FailRequest(Strict):
    lease_id: LeaseId
    error: str = Field(description="kept up to TENSLORA_MAX_ERROR_KIB (64 KiB), the rest cut off")


class AdapterStored(BaseModel):
    job_id: int
    attempt: int = Field(description="the attempt whose adapter this is")
    size_bytes: int = Field(description="size of the stored zip")
    sha256: str = Field(description="SHA-256 of the stored zip (GET .../adapter serves it)")
    uploaded_at: datetime


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    worker_id: str
    device: str | None
    free_memory_mb: int | None
    last_seen_at: datetime
    running_jobs: int


class WorkerList(BaseModel):
    items: list[WorkerOut]


class EstimateOut(BaseModel):
    """What the scheduler learned about the memory of one job shape."""

    model_config = ConfigDict(from_attributes=True)

    shape: str = Field(description="backbone|batch=B|len=L|precision: jobs of one shape share "
                       "their estimates")
    peak_memory_mb: int | None = Field(
        description="the largest peak a job of this shape reported running alone; null: none"
    )
    pack_share_mb: int | None = Field(
        description="the largest per-job share a pack of this shape showed; null: none"
    )
    formula_mb: int | None = Field(
        description="the estimate before any report; null when no job of the shape is stored"
    )
    queued_jobs: int = Field(description="queued jobs of this shape")
    updated_at: datetime | None = Field(description="when a report last changed it")


class EstimateList(BaseModel):
    items: list[EstimateOut]


class MetricSummary(BaseModel):
    n: int
    mean: float | None
    std: float | None = Field(description="sample standard deviation (n - 1); null when n < 2")
    min: float | None
    max: float | None
    delta: float | None = Field(
        None, description="with compare_to: this mean minus the baseline row's mean"
    )
    p_value: float | None = Field(
        None,
        description="with compare_to: Welch's two-sided t-test against the baseline row's "
        "values; null when either side has fewer than 2 values or both are constant and equal",
    )


class ResultRow(BaseModel):
    group: dict[str, Any]
    n: int = Field(description="succeeded jobs in the group")
    metrics: dict[str, MetricSummary]
    baseline: bool = Field(False, description="the row compare_to names (no delta / p_value)")


class ResultsOut(BaseModel):
    sweep_id: int
    group_by: list[str]
    compare_to: dict[str, str] | None = Field(
        None, description="the baseline's group values, as given in compare_to"
    )
    rows: list[ResultRow]


class TokenCreate(Strict):
    role: Role = Field(strict=False)  # a JSON string names the member
    name: Name


class TokenCreated(BaseModel):
    id: int
    token: str
    role: Role
    name: str


class TokenOut(BaseModel):
    """A token as listed: never the token itself or its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute; null when never used")
    created_by: str | None = Field(description="the admin token that minted it over the API")
    revoked_at: datetime | None


class TokenList(BaseModel):
    items: list[TokenOut]


#: The paths results group by (``group_by``): the job spec's own, as an enum in the schema.
GroupPath = StrEnum("GroupPath", [(path, path) for path in spec_paths()])  # type: ignore[misc]


class ErrorOut(BaseModel):
    """Every error answer but a 422 of the request's shape: what went wrong, in words."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "base", "tag"], ["query", "status"]')
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: the fields at fault (the request's shape), or a sentence naming the field (its
    meaning: an unknown method, a name over its limit)."""

    detail: list[ValidationIssue] | str
