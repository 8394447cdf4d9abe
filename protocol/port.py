"""``SchedulerPort``: the one way to read the scheduler, submit to it and cancel in it.

Two implementations answer the same calls with the same models and errors: ``ApiClient``
(``protocol.client``) over HTTP, and ``LocalScheduler`` (``cli.local_scheduler``) in this
process over the database. The CLI opens one of them (``cli.scheduler_port.open_scheduler``) and
never asks which; ``tests/service/test_scheduler_port.py`` runs one contract over both.

Every call returns the models of ``protocol.models`` and raises the errors of
``protocol.errors``: ``ApiRejected`` (``LeaseLost`` for 409) with the HTTP status the API
answers (404 an unknown sweep or job, 422 an invalid sweep or query), ``ApiUnavailable`` when
the scheduler cannot be reached. A feature that reads the scheduler adds one method here, its
two implementations, and one row to the contract test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, Self

from protocol.models import (
    MAX_PAGE,
    EstimateList,
    EstimateOut,
    JobList,
    JobOut,
    MetricsOut,
    ResultsOut,
    SweepList,
    SweepOut,
    WorkerList,
)
from protocol.vocabulary import JobStatus


class SchedulerPort(Protocol):
    """Sweeps, their results, their jobs (with metrics and adapters), the workers and the
    learned memory estimates.

    Subclass it to inherit ``iter_jobs``, ``jobs`` and the context manager; ``close`` frees what
    the implementation holds (a connection pool).
    """

    def close(self) -> None: ...

    def submit_sweep(self, body: dict[str, Any]) -> SweepOut:
        """Validate, expand and queue a sweep (``SweepCreate``'s fields); 422 when invalid."""
        ...

    def list_sweeps(self, limit: int = 50, offset: int = 0) -> SweepList:
        """Newest first, each with its job counts by status."""
        ...

    def get_sweep(self, sweep_id: int) -> SweepOut: ...

    def cancel_sweep(self, sweep_id: int) -> SweepOut:
        """Queued jobs are cancelled now, running ones at their next heartbeat."""
        ...

    def sweep_results(
        self, sweep_id: int, group_by: Sequence[str], compare_to: Sequence[str] = ()
    ) -> ResultsOut:
        """Mean, std, min, max of every result by group (``group_by`` paths, each may be
        comma-separated); ``compare_to`` (``FIELD:VALUE``) names the baseline row."""
        ...

    def job_page(
        self, sweep_id: int | None = None, status: JobStatus | None = None,
        limit: int = MAX_PAGE, offset: int = 0,
    ) -> JobList:
        """One page of jobs in id order (at most ``MAX_PAGE``), and how many match in all."""
        ...

    def get_job(self, job_id: int) -> JobOut: ...

    def job_metrics(self, job_id: int) -> MetricsOut:
        """The points the job streamed, by name then step."""
        ...

    def download_adapter(self, job_id: int) -> bytes:
        """The succeeded job's adapter: a zip of ``adapter_model.safetensors`` and
        ``adapter_config.json``; 404 when the job kept none."""
        ...

    def workers(self, seen_within_s: float | None = None) -> WorkerList:
        """Workers seen within the window (default: the scheduler's setting)."""
        ...

    def estimates(self) -> EstimateList:
        """The memory learned per job shape from reported peaks (admin)."""
        ...

    def reset_estimate(self, shape: str) -> EstimateOut:
        """Forget what was learned about ``shape`` (admin): its queued jobs go back to the
        formula's estimate; 404 when nothing was learned for it."""
        ...

    def iter_jobs(
        self, sweep_id: int | None = None, status: JobStatus | None = None
    ) -> Iterator[JobOut]:
        """Every job that matches, page after page."""
        seen = 0
        while True:
            page = self.job_page(sweep_id, status, MAX_PAGE, seen)
            yield from page.items
            seen += len(page.items)
            if not page.items or seen >= page.total:
                return

    def jobs(self, sweep_id: int | None = None, status: JobStatus | None = None) -> list[JobOut]:
        return list(self.iter_jobs(sweep_id, status))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
