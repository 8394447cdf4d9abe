"""The finished runs the ``allocate`` preset reads: each succeeded job's config and the last
value of each TensLoRA+ spectrum metric it streamed. Over HTTP with ``--url``, else from the
local database, like the rest of ``tenslora sweep``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tenslora.contract import SPECTRUM_PREFIXES, last_values

PAGE = 1000


def fetch_finished_runs(url: str | None, token: str | None, sweep_id: int) -> list[dict[str, Any]]:
    """``[{"config": job spec, "spectra_metrics": {name: last value}}]`` of succeeded jobs.

    Raises ``LookupError`` with the service's message when the sweep is not there.
    """
    return _over_http(url, token, sweep_id) if url else _from_database(sweep_id)


def _over_http(url: str, token: str | None, sweep_id: int) -> list[dict[str, Any]]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as http:
        sweep = http.get(f"/api/v1/sweeps/{sweep_id}")
        if sweep.status_code >= 400:
            raise LookupError(f"sweep {sweep_id}: HTTP {sweep.status_code}: {sweep.text[:300]}")
        runs: list[dict[str, Any]] = []
        while True:
            page = http.get("/api/v1/jobs", params={
                "sweep_id": sweep_id, "status": "succeeded", "limit": PAGE, "offset": len(runs),
            }).raise_for_status().json()
            for job in page["items"]:
                points = http.get(f"/api/v1/jobs/{job['id']}/metrics").raise_for_status().json()
                runs.append({"config": job["config"],
                             "spectra_metrics": last_values(points["points"], SPECTRUM_PREFIXES)})
            if not page["items"] or len(runs) >= page["total"]:
                return runs


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
