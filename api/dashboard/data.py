"""What the pages show, fetched through the scheduler's public query functions.

The JSON API calls the very same functions, so a page and the API cannot disagree; this module
only turns their domain objects into the plain dicts the templates read (and computes jobs/s and
ETA from the timings query). It never aggregates rows itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from api.dashboard.tables import LOWER_IS_BETTER, SPEC_PATHS, method_of
from protocol.vocabulary import ACTIVE, JobStatus
from scheduler import artifacts, progress, queries, sweeps, tokens
from scheduler import results as results_queries
from scheduler import sessions as dashboard_sessions
from scheduler.errors import NotFound
from scheduler.metrics import get_metrics
from scheduler.models import Job

#: Config paths offered in the group-by picker (any dotted path of the job spec works).
GROUP_KEYS: tuple[str, ...] = (
    "tag", "adapter.method", "adapter.factorization", "adapter.ranks", "task", "backbone",
    "optim.lr", "optim.core_lr_multiplier", "seed", "kind",
)


def _database(request: Request) -> Any:
    return request.app.state.database


@contextmanager
def read_session(request: Request) -> Iterator[Session]:
    with _database(request).session(write=False) as session:
        yield session


@contextmanager
def write_session(request: Request) -> Iterator[Session]:
    with _database(request).session(write=True) as session:
        yield session


def cancel_sweep(session: Session, sweep_id: int, by: tokens.TokenInfo) -> None:
    """The API's own cancel (and its ownership rule): queued jobs now, running ones at their
    next heartbeat."""
    sweeps.cancel_sweep(session, sweep_id, by=by)


def sign_in(request: Request, raw_token: str) -> str | None:
    """A new session id for a valid token (the API's own hash lookup), else None."""
    with write_session(request) as session:
        token = tokens.find_token(session, raw_token)
        if token is None:
            return None
        tokens.mark_used(session, token.id)
        lifetime_s = request.app.state.settings.session_hours * 3600
        return dashboard_sessions.create_session(session, token.id, lifetime_s)


def session_token(request: Request, raw_session: str) -> tokens.TokenInfo | None:
    with read_session(request) as session:
        return dashboard_sessions.find_session(session, raw_session)


def sign_out(request: Request, raw_session: str) -> None:
    with write_session(request) as session:
        dashboard_sessions.end_session(session, raw_session)


def _rate_and_eta(
    counts: Mapping[str, int], timing: progress.SweepTiming | None
) -> tuple[float | None, float | None]:
    """Finished jobs per second since the first start, and the time left at that rate."""
    if timing is None or not timing.n_finished or timing.first_started_at is None:
        return None, None
    end = timing.last_finished_at or datetime.now(UTC)
    if counts.get(JobStatus.running):
        end = datetime.now(UTC)
    elapsed = (end - timing.first_started_at).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = timing.n_finished / elapsed
    remaining = sum(counts.get(s, 0) for s in ACTIVE)
    return rate, (remaining / rate if remaining else None)


def _sweep_dict(view: sweeps.SweepView, timing: progress.SweepTiming | None) -> dict[str, Any]:
    sweep = view.sweep
    jobs_per_s, eta_s = _rate_and_eta(view.counts, timing)
    unfinished = sum(view.counts.get(s, 0) for s in ACTIVE)
    return {
        "id": sweep.id, "name": sweep.name, "created_at": sweep.created_at,
        "n_jobs": sweep.n_jobs, "counts": dict(view.counts), "definition": sweep.definition,
        "jobs_per_s": jobs_per_s, "eta_s": eta_s, "status": view.status.value,
        "owner_token_id": sweep.owner_token_id,
        "live": bool(unfinished) and sweep.cancelled_at is None,
    }


def list_sweeps(session: Session, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    views, total = sweeps.list_sweeps(session, limit=limit, offset=offset)
    timings = progress.sweep_timings(session, [v.sweep.id for v in views])
    return [_sweep_dict(v, timings.get(v.sweep.id)) for v in views], total


def get_sweep(session: Session, sweep_id: int) -> dict[str, Any] | None:
    try:
        view = sweeps.get_sweep(session, sweep_id)
    except NotFound:
        return None
    return _sweep_dict(view, progress.sweep_timings(session, [sweep_id]).get(sweep_id))


def parse_group_by(text: str | None) -> list[str]:
    """The API's own parsing of ``group_by`` (raises ``InvalidInput`` with a clear detail)."""
    return results_queries.parse_group_by([text or ""])


def default_columns(sweep: Mapping[str, Any]) -> str:
    """Tasks as columns (the paper's layout) when the sweep spans several tasks, else metrics."""
    definition = sweep.get("definition") or {}
    tasks = {p.get("task") for p in [definition.get("base") or {},
                                     *(definition.get("configs") or [])] if p.get("task")}
    tasks |= set((definition.get("grid") or {}).get("task") or [])
    return "tasks" if len(tasks) > 1 else "metrics"


def results(session: Session, sweep_id: int, group_by: Sequence[str]) -> list[dict[str, Any]]:
    """The API's results rows: ``{group, n, metrics: {name: {n, mean, std, min, max}}}``, each
    with ``spec``: the row's shared ``regime`` and ``adapter.method`` (``tables.SPEC_PATHS``)."""
    return compared_results(session, sweep_id, group_by, "", group_by)[0]


def compared_results(
    session: Session,
    sweep_id: int,
    group_by: Sequence[str],
    compare_to: str | None,
    baseline_fields: Sequence[str],
) -> tuple[list[dict[str, Any]], str | None]:
    """``results`` with ``compare_to``'s delta and p_value, and the baseline used.

    ``compare_to`` None picks the LoRA row when exactly one row is LoRA; "" compares nothing.
    Its fields must be among ``baseline_fields`` (the table's rows; ``group_by`` may add
    ``task``, then each task is compared with its own baseline). Raises ``InvalidInput``.
    """
    rows = results_queries.aggregate_results(session, sweep_id, list(group_by))
    specs = results_queries.group_values(session, sweep_id, list(group_by), list(SPEC_PATHS))
    spec_of = [specs.get(results_queries.group_key(row.group), {}) for row in rows]
    if compare_to is None:
        compare_to = default_compare_to([r.group for r in rows], spec_of, baseline_fields)
    baseline = results_queries.parse_compare_to([compare_to], list(baseline_fields))
    results_queries.compare(rows, baseline, f"this table (rows by {', '.join(baseline_fields)})")
    answer = [{**row.as_dict(), "spec": spec} for row, spec in zip(rows, spec_of, strict=True)]
    return answer, compare_to or None


def default_compare_to(
    groups: Sequence[Mapping[str, Any]],
    specs: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
) -> str:
    """``compare_to`` naming the one LoRA row (by ``fields``) among ``groups``, else ""."""
    lora = {
        results_queries.compare_text({k: group.get(k) for k in fields})
        for group, spec in zip(groups, specs, strict=True)
        if method_of({k: group.get(k) for k in fields}, spec) == "lora"
    }
    return lora.pop() if len(lora) == 1 else ""


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "sweep_id": job.sweep_id, "status": job.status, "attempt": job.attempt,
        "config": job.config, "device": job.device, "worker_id": job.worker_id,
        "started_at": job.started_at, "finished_at": job.finished_at, "result": job.result,
        "error": job.error, "pack_id": job.pack_id, "kind": job.kind,
    }


def pack_jobs(session: Session, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The other jobs of the pack ``job`` ran in (none when it ran alone)."""
    if job["pack_id"] is None:
        return []
    jobs, _ = queries.list_jobs(session, pack_id=job["pack_id"], limit=1000)
    return [job_dict(other) for other in jobs if other.id != job["id"]]


def list_jobs(
    session: Session, sweep_id: int, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    jobs, total = queries.list_jobs(session, sweep_id=sweep_id, status=status, limit=limit,
                                    offset=offset)
    return [job_dict(job) for job in jobs], total


def get_job(session: Session, job_id: int) -> dict[str, Any] | None:
    try:
        return job_dict(queries.get_job(session, job_id))
    except NotFound:
        return None


def best_adapters(
    session: Session, sweep_id: int, group_by: Sequence[str], metric: str | None
) -> dict[str, int]:
    """Per results row (``results_queries.group_key`` of its group): the job with the best
    ``metric`` among the row's runs that kept an adapter."""
    if not metric:
        return {}
    return results_queries.best_job_per_group(
        session, sweep_id, list(group_by), metric, metric in LOWER_IS_BETTER,
        where=[artifacts.has_adapter()],
    )


def job_adapter(session: Session, job_id: int) -> dict[str, Any] | None:
    """The job's downloadable adapter (``size_bytes``, ``sha256``) and its mode ``analysis``
    (None when the worker sent none); None when the job has no adapter."""
    stored = artifacts.adapter_info(session, job_id)
    if stored is None:
        return None
    return {"size_bytes": stored.size_bytes, "sha256": stored.sha256,
            "analysis": artifacts.get_analysis(session, job_id)}


def adapter_archive(session: Session, job_id: int) -> bytes | None:
    """The zip ``GET /api/v1/jobs/{id}/adapter`` serves; None where it answers 404."""
    try:
        return artifacts.get_adapter(session, job_id)[1]
    except NotFound:
        return None


def job_metrics(session: Session, job_id: int) -> list[dict[str, Any]]:
    return [{"step": p.step, "name": p.name, "value": p.value}
            for p in get_metrics(session, job_id)]


def recent_workers(request: Request, session: Session) -> tuple[list[dict[str, Any]], float]:
    """Workers seen within the service's window, with the ids of the jobs each runs."""
    window_s = request.app.state.settings.worker_seen_seconds
    views = queries.list_workers(session, window_s)
    running, _ = queries.list_jobs(session, status=JobStatus.running, limit=10_000)
    jobs_of: dict[str, list[Job]] = {}
    for job in running:
        jobs_of.setdefault(job.worker_id or "", []).append(job)
    workers = []
    for view in views:
        jobs = jobs_of.get(view.worker_id, [])
        # Free memory is known for the device of the last claim or heartbeat; the worker's other
        # devices show up through the jobs running on them.
        devices = {view.device or "-": view.free_memory_mb}
        for job in jobs:
            devices.setdefault(job.device or "-", None)
        workers.append({
            "worker_id": view.worker_id, "last_seen_at": view.last_seen_at,
            "devices": [{"device": d, "free_memory_mb": m} for d, m in sorted(devices.items())],
            "running_jobs": [job.id for job in jobs], "n_running": view.running_jobs,
        })
    return workers, window_s
