"""The finished runs the ``allocate`` preset reads: each succeeded job's config and the last
value of each TensLoRA+ spectrum metric it streamed, through the scheduler port (over HTTP with
``--url``, else the local database)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.vocabulary import JobStatus
from tenslora.core.metric_contract import SPECTRUM_PREFIXES, last_values

if TYPE_CHECKING:
    from protocol.port import SchedulerPort


def fetch_finished_runs(port: SchedulerPort, sweep_id: int) -> list[dict[str, Any]]:
    """``[{"config": job spec, "spectra_metrics": {name: last value}}]`` of succeeded jobs.

    Raises the port's errors: ``ApiRejected`` (404) when the sweep is not there.
    """
    port.get_sweep(sweep_id)
    return [
        {"config": job.config, "spectra_metrics": last_values(
            [point.model_dump() for point in port.job_metrics(job.id).points], SPECTRUM_PREFIXES
        )}
        for job in port.iter_jobs(sweep_id, JobStatus.succeeded)
    ]
