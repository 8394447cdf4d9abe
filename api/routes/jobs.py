from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import AnyToken, ReadSessionDep, SessionDep, SettingsDep, WorkerToken
from api.errors import error_responses
from api.responses import model_response
from protocol.models import (
    MAX_PAGE,
    AdapterStored,
    ClaimPackRequest,
    ClaimPackResponse,
    ClaimRequest,
    ClaimResponse,
    CompleteRequest,
    FailRequest,
    HeartbeatResponse,
    JobList,
    JobOut,
    LeaseId,
    LeaseRequest,
    MetricPointOut,
    MetricsOut,
    MetricsRequest,
    MetricsStored,
)
from protocol.vocabulary import JobStatus
from scheduler import artifacts, metrics, packs, queries, queue
from scheduler.db import Database

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=error_responses(401, 422, 503))
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# A worker's call on a lease: another token's lease (403), no such job, not the live lease.
LEASE_ERRORS = error_responses(
    403, 404, 409, 413, s403="not a worker or admin token, or the lease is another token's",
    s404="no such job", s409="the lease is not the job's live lease",
)
CLAIM_ERRORS = error_responses(403, 413, s403="not a worker or admin token")
NO_SUCH_JOB = error_responses(404, s404="no such job")


@router.get("")
def list_jobs(
    session: ReadSessionDep,
    _token: AnyToken,
    sweep_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    pack_id: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{1,32}$", description="the jobs of one pack")
    ] = None,
) -> JobList:
    jobs, total = queries.list_jobs(session, sweep_id, status, limit, offset, pack_id)
    return JobList(items=[JobOut.model_validate(job) for job in jobs], total=total)


@router.post(
    "/claim",
    responses={
        200: {"model": ClaimResponse}, 204: {"description": "no queued job fits"}, **CLAIM_ERRORS
    },
    response_model=None,
)
def claim(
    body: ClaimRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> Response:
    """Lease the highest-priority queued job whose memory estimate fits ``free_memory_mb``."""
    claimed = queue.claim_job(
        session,
        worker_id=body.worker_id,
        device=body.device,
        free_memory_mb=body.free_memory_mb,
        device_memory_mb=body.device_memory_mb,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        job_id=body.job_id,
        reap=request.app.state.claim_reaps.due(),
        token_id=token.id,
    )
    if claimed is None:
        return Response(status_code=204)
    return model_response(_claim_out(claimed))


@router.post(
    "/claim-pack",
    responses={
        200: {"model": ClaimPackResponse}, 204: {"description": "no queued job fits"},
        **CLAIM_ERRORS,
    },
    response_model=None,
)
def claim_pack(
    body: ClaimPackRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> Response:
    """Lease up to ``max_jobs`` queued jobs of one pack key that fit ``free_memory_mb`` together.

    The first is the job the single claim would hand out; the rest share its pack key. Each job
    has its own lease; a job without a pack key comes alone (``pack_id`` null).
    """
    claimed = packs.claim_pack(
        session,
        worker_id=body.worker_id,
        device=body.device,
        free_memory_mb=body.free_memory_mb,
        device_memory_mb=body.device_memory_mb,
        max_jobs=body.max_jobs,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        reap=request.app.state.claim_reaps.due(),
        token_id=token.id,
    )
    if claimed is None:
        return Response(status_code=204)
    # Serialised by pydantic directly (model_response): without a response_model FastAPI would
    # walk the object with jsonable_encoder, the slowest part of the hottest request.
    return model_response(ClaimPackResponse(
        pack_id=claimed.pack_id,
        claims=[_claim_out(claim) for claim in claimed.claims],
        memory_estimate_mb=claimed.memory_estimate_mb,
    ))


def _claim_out(claim: queue.Claim) -> ClaimResponse:
    return ClaimResponse(
        job=JobOut.model_validate(claim.job),
        lease_id=claim.lease_id,
        lease_expires_at=claim.lease_expires_at,
    )


@router.get("/{job_id:int}", responses=NO_SUCH_JOB)
def get_job(job_id: JobId, session: ReadSessionDep, _token: AnyToken) -> JobOut:
    return JobOut.model_validate(queries.get_job(session, job_id))


@router.post("/{job_id:int}/heartbeat", responses=LEASE_ERRORS)
def heartbeat(
    job_id: JobId,
    body: LeaseRequest,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> HeartbeatResponse:
    """Extend the lease; ``cancelled: true`` means stop working on the job."""
    beat = queue.heartbeat(
        session, job_id, body.lease_id, settings.lease_seconds, token_id=token.id
    )
    return HeartbeatResponse(cancelled=beat.cancelled, lease_expires_at=beat.lease_expires_at)


@router.post("/{job_id:int}/metrics", responses=LEASE_ERRORS)
def post_metrics(
    job_id: JobId,
    body: MetricsRequest,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> MetricsStored:
    points = [metrics.MetricPoint(p.step, p.name, p.value) for p in body.points]
    stored = metrics.add_metrics(
        session, job_id, body.lease_id, points, token_id=token.id, limits=settings.limits
    )
    return MetricsStored(stored=stored)


@router.get("/{job_id:int}/metrics", responses=NO_SUCH_JOB)
def get_metrics(
    job_id: JobId,
    session: ReadSessionDep,
    _token: AnyToken,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> MetricsOut:
    points = metrics.get_metrics(session, job_id, name)
    return MetricsOut(points=[MetricPointOut.model_validate(point) for point in points])


@router.post("/{job_id:int}/complete", responses=LEASE_ERRORS)
def complete(
    job_id: JobId,
    body: CompleteRequest,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> JobOut:
    """Store the result once; repeating it with the same lease is a no-op."""
    job = queue.complete_job(
        session, job_id, body.lease_id, body.result, token_id=token.id, limits=settings.limits
    )
    return JobOut.model_validate(job)


@router.post("/{job_id:int}/fail", responses=LEASE_ERRORS)
def fail(
    job_id: JobId,
    body: FailRequest,
    session: SessionDep,
    settings: SettingsDep,
    token: WorkerToken,
) -> JobOut:
    """Fail the job for good; an error text over TENSLORA_MAX_ERROR_KIB is kept truncated."""
    job = queue.fail_job(
        session, job_id, body.lease_id, body.error, token_id=token.id, limits=settings.limits
    )
    return JobOut.model_validate(job)


@router.post("/{job_id:int}/release", responses=LEASE_ERRORS)
def release(job_id: JobId, body: LeaseRequest, session: SessionDep, token: WorkerToken) -> JobOut:
    """Give the lease back: the job is queued again with its attempt unchanged."""
    job = queue.release_job(session, job_id, body.lease_id, token_id=token.id)
    return JobOut.model_validate(job)


#: The upload whose route reads its body against its own limit (TENSLORA_MAX_ADAPTER_MB), not
#: TENSLORA_MAX_BODY_MB.
ADAPTER_UPLOAD = re.compile(r"^/api/v1/jobs/[0-9]+/adapter$")
ZIP_BODY = {
    "requestBody": {
        "required": True,
        "description": "a zip of the folder tenslora.save_adapter wrote",
        # Documented as octet-stream (what OpenAPI tools know how to send); any type is read.
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/{job_id}/adapter",
    openapi_extra=ZIP_BODY,
    responses={
        **LEASE_ERRORS,
        **error_responses(
            413, 422, s413="over TENSLORA_MAX_ADAPTER_MB",
            s422="not a zip of adapter_model.safetensors + adapter_config.json",
        ),
    },
)
async def put_adapter(
    job_id: JobId,
    lease_id: Annotated[LeaseId, Query(description="the job's live lease")],
    request: Request,
    settings: SettingsDep,
    token: WorkerToken,
) -> AdapterStored:
    """Keep the trained adapter of the job this lease holds (before reporting its result); a
    later attempt's upload replaces an earlier one."""
    max_bytes = artifacts.limit_bytes(settings.max_adapter_mb)
    data = await _body_within(request, max_bytes)
    stored = await run_in_threadpool(
        _store_adapter, request.app.state.database, job_id, lease_id, token.id, data, max_bytes
    )
    return AdapterStored(**asdict(stored))


@router.get(
    "/{job_id}/adapter",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "the two adapter files"},
        **error_responses(404, s404="no such job, or it has no adapter"),
    },
)
def get_adapter(job_id: JobId, session: ReadSessionDep, _token: AnyToken) -> Response:
    """The succeeded job's adapter: a zip of ``adapter_model.safetensors`` and
    ``adapter_config.json``, for ``tenslora.load_adapter`` onto the job's backbone."""
    stored, archive = artifacts.get_adapter(session, job_id)
    headers = {
        "Content-Disposition": f'attachment; filename="job-{job_id}-adapter.zip"',
        "ETag": f'"{stored.sha256}"',
    }
    return Response(archive, media_type="application/zip", headers=headers)


async def _body_within(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise artifacts.too_large(int(declared), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise artifacts.too_large(None, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _store_adapter(
    database: Database, job_id: int, lease_id: str, token_id: int, data: bytes, max_bytes: int
) -> artifacts.StoredAdapter:
    # Unpacked and checked before the write transaction opens (SQLite has one writer at a time).
    upload = artifacts.read_archive(data, max_bytes)
    with database.session() as session:
        return artifacts.store_adapter(session, job_id, lease_id, upload, token_id=token_id)
