"""The finished runs the ``allocate`` preset reads: each succeeded job's config and the last
value of each TensLoRA+ spectrum metric it streamed. Over HTTP with ``--url``, else from the
local database, like the rest of ``tenslora sweep``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tenslora.core.metric_contract import SPECTRUM_PREFIXES, last_values


def fetch_finished_runs(url: str | None, token: str | None, sweep_id: int) -> list[dict[str, Any]]:
    """``[{"config": job spec, "spectra_metrics": {name: last value}}]`` of succeeded jobs.

    Raises ``LookupError`` with the service's message when the sweep is not there.
    """
    return _over_http(url, token, sweep_id) if url else _from_database(sweep_id)


def _over_http(url: str, token: str | None, sweep_id: int) -> list[dict[str, Any]]:
    from protocol.client import ApiClient
    from protocol.errors import ApiError

    with ApiClient(url, token, timeout_s=60, retry_for_s=0) as api:
        try:
            api.get_sweep(sweep_id)
            return [
                {"config": job.config, "spectra_metrics": last_values(
                    [point.model_dump() for point in api.job_metrics(job.id).points],
                    SPECTRUM_PREFIXES,
                )}
                for job in api.iter_jobs(sweep_id, "succeeded")
            ]
        except ApiError as exc:  # not there, not allowed, or no answer: the CLI says which
            raise LookupError(str(exc)) from None


def _from_database(sweep_id: int) -> list[dict[str, Any]]:
    from scheduler import metrics, queries, sweeps
    from scheduler.db import Database
    from scheduler.errors import NotFound
    from scheduler.migrate import upgrade
    from scheduler.settings import Settings

    url = Settings().database_url
    upgrade(url)
    database = Database(url)
    try:
        with database.session(write=False) as session:
            try:
                sweeps.get_sweep(session, sweep_id)
            except NotFound as exc:
                raise LookupError(exc.detail) from None
            jobs, _ = queries.list_jobs(session, sweep_id, "succeeded", limit=10**6)
            return [
                {"config": job.config, "spectra_metrics": last_values(
                    [asdict(p) for p in metrics.get_metrics(session, job.id)], SPECTRUM_PREFIXES
                )}
                for job in jobs
            ]
    finally:
        database.dispose()
