"""``LocalScheduler``: ``SchedulerPort`` in this process, over the database itself.

What ``tenslora sweep``, ``results``, ``job``, ``estimates`` and ``preset allocate`` use without
``--url``: the scheduler functions the API's routes call, each in one session on
TENSLORA_DATABASE_URL (the schema upgraded first), answering the same models. A scheduler error
becomes the protocol error of the status the API would answer (``scheduler.errors.HTTP_STATUS``),
so a caller cannot tell the two apart. The host's own CLI acts as an admin (it holds the
database already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.orm import Session

from protocol.errors import ApiError, ApiUnavailable, rejection
from protocol.models import (
    MAX_PAGE,
    EstimateList,
    EstimateOut,
    JobList,
    JobOut,
    MetricPointOut,
    MetricsOut,
    ResultsOut,
    SweepCreate,
    SweepList,
    SweepOut,
    WorkerList,
    WorkerOut,
)
from protocol.port import SchedulerPort
from protocol.vocabulary import JobStatus
from scheduler import artifacts, memory, metrics, queries, results, sweeps
from scheduler.db import Database
from scheduler.errors import InvalidInput, SchedulerError, http_status
from scheduler.migrate import upgrade
from scheduler.settings import Settings

T = TypeVar("T")


def default_database_url() -> str:
    """TENSLORA_DATABASE_URL, else the SQLite file in the user data folder (``tenslora serve``)."""
    return Settings().database_url


def results_layout(
    definition: Mapping[str, Any], group_by: Iterable[str], compare_to: Iterable[str]
) -> list[str]:
    """The rows a results table of a sweep ``definition`` groups by: ``group_by`` checked, else
    the default grouping; ``compare_to`` checked against them. Raises ``ApiRejected`` (422)
    naming what is wrong, as the results call would once the sweep has run."""
    try:
        paths = results.parse_group_by(group_by) or results.default_group_by(definition)
        results.parse_compare_to(compare_to, paths)
    except InvalidInput as exc:
        raise _protocol_error(exc) from None
    return paths


class LocalScheduler(SchedulerPort):
    def __init__(self, database_url: str | None = None) -> None:
        self.settings = Settings()
        url = database_url or self.settings.database_url
        upgrade(url)
        self.database = Database(url, artifacts=self.settings.artifacts_dir)

    def close(self) -> None:
        self.database.dispose()

    def _run(self, operation: Callable[[Session], T], write: bool = False) -> T:
        try:
            with self.database.session(write=write) as session:
                return operation(session)
        except SchedulerError as exc:
            raise _protocol_error(exc) from None

    def submit_sweep(self, body: dict[str, Any]) -> SweepOut:
        try:
            request = SweepCreate.model_validate(body)
        except ValidationError as exc:
            raise rejection(422, _describe(exc)) from None
        return self._run(
            lambda session: sweeps.sweep_out(sweeps.create_sweep(
                session, name=request.name, base=request.base, configs=request.configs,
                grid=request.grid, priority=request.priority,
                max_jobs=self.settings.max_sweep_jobs, limits=self.settings.limits,
            )),
            write=True,
        )

    def list_sweeps(self, limit: int = 50, offset: int = 0) -> SweepList:
        _check_page(limit, offset)

        def page(session: Session) -> SweepList:
            views, total = sweeps.list_sweeps(session, limit, offset)
            return SweepList(items=[sweeps.sweep_out(view) for view in views], total=total)

        return self._run(page)

    def get_sweep(self, sweep_id: int) -> SweepOut:
        return self._run(lambda session: sweeps.sweep_out(sweeps.get_sweep(session, sweep_id)))

    def cancel_sweep(self, sweep_id: int) -> SweepOut:
        return self._run(
            lambda session: sweeps.sweep_out(sweeps.cancel_sweep(session, sweep_id)), write=True
        )

    def sweep_results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> ResultsOut:
        return self._run(lambda session: ResultsOut.model_validate(
            results.results_answer(session, sweep_id, group_by, compare_to)
        ))

    def job_page(
        self, sweep_id: int | None = None, status: JobStatus | None = None,
        limit: int = MAX_PAGE, offset: int = 0,
    ) -> JobList:
        _check_page(limit, offset)

        def page(session: Session) -> JobList:
            jobs, total = queries.list_jobs(session, sweep_id, status, limit, offset)
            return JobList(items=[JobOut.model_validate(job) for job in jobs], total=total)

        return self._run(page)

    def get_job(self, job_id: int) -> JobOut:
        return self._run(lambda session: JobOut.model_validate(queries.get_job(session, job_id)))

    def job_metrics(self, job_id: int) -> MetricsOut:
        return self._run(lambda session: MetricsOut(points=[
            MetricPointOut.model_validate(point) for point in metrics.get_metrics(session, job_id)
        ]))

    def download_adapter(self, job_id: int) -> bytes:
        return self._run(lambda session: bytes(artifacts.get_adapter(session, job_id)[1]))

    def workers(self, seen_within_s: float | None = None) -> WorkerList:
        window = self.settings.worker_seen_seconds if seen_within_s is None else seen_within_s
        return self._run(lambda session: WorkerList(items=[
            WorkerOut.model_validate(view) for view in queries.list_workers(session, window)
        ]))

    def estimates(self) -> EstimateList:
        return self._run(lambda session: EstimateList(items=[
            EstimateOut.model_validate(view) for view in memory.list_estimates(session)
        ]))

    def reset_estimate(self, shape: str) -> EstimateOut:
        return self._run(
            lambda session: EstimateOut.model_validate(memory.reset_estimate(session, shape)),
            write=True,
        )


def _protocol_error(error: SchedulerError) -> ApiError:
    status = http_status(error)
    if status >= 500:
        return ApiUnavailable(error.detail, status, error.detail)
    return rejection(status, error.detail)


def _check_page(limit: int, offset: int) -> None:
    """The API's bounds of a page (its query parameters answer 422 outside them)."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise rejection(422, f"limit must be 1 to {MAX_PAGE} and offset at least 0; "
                             f"got limit {limit}, offset {offset}")


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'file'}: {item['msg']}"
        for item in error.errors()[:5]
    )
