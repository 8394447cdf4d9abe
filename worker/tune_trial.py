"""One Ray Tune trial of ``tenslora sweep tune``: one job of the sweep, recorded through the API.

The trial claims the job it was made for (the claim names the job id) and runs it as a pack of
one under the worker's own supervision (``worker.pack.RunningPack``: the child process, the lease
keeper's heartbeats, metric batches and cancel detection, the spooled report), and reports each
evaluation to Tune so ASHA can stop it. Ray stops a trial by raising ``SystemExit`` inside
``tune.report``; the job is then failed with a message that says so, and kept out of the sweep's
mean/std. Every report carries the job's lease, so the driver can settle the job should the
trial die before it does (``worker.tune``); the last one says the job's ``outcome``. A result
the API does not take in time stays in this host's spool (``spool_dir``), and the driver resends
it rather than failing the job.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, Lease
from protocol.vocabulary import Outcome
from worker.pack import RunningPack
from worker.spool import Spool

log = logging.getLogger(__name__)

# The trial's Ray resources decide where it runs; the memory check of the claim must not refuse.
UNLIMITED_MB = 10**9
REPORT_PATIENCE_S = 120.0  # a trial keeps its lease and resends its result this long
POLL_S = 0.5  # how often the trial's thread looks for the pack's end between evaluations


def _log_dir() -> Path:
    return Path(tempfile.gettempdir()) / "tenslora-tune"


def spool_dir() -> Path:
    """Where this host's trials spool the reports the API did not take."""
    return _log_dir() / "spool"


def run_trial(config: dict[str, Any], api_url: str, token: str) -> None:
    """The Tune trainable: ``config["job"]`` is ``{"id", "tag"}`` of one job of the sweep."""
    from ray import tune

    client = ApiClient(api_url, token)
    job_id = int(config["job"]["id"])
    device = "cuda" if _has_gpu() else "cpu"
    worker_id = f"tune-{socket.gethostname()}-{os.getpid()}"
    try:
        lease = client.claim(worker_id, device, UNLIMITED_MB, job_id=job_id)
        if lease is None:
            # Another worker took it first: its run is recorded there.
            tune.report({"job_id": job_id, "claimed": 0, "evaluations": 0})
            return
        _TrialRun(client, lease, device).run()
    finally:
        client.close()


def _has_gpu() -> bool:
    import ray

    return bool(ray.get_gpu_ids())


class _TrialRun:
    def __init__(self, client: ApiClient, lease: Lease, device: str) -> None:
        self.lease, self.device = lease, device
        # Tune must hear of evaluations from the trial's own thread: the pack's hands them over.
        self.points: queue.SimpleQueue[list[dict[str, Any]]] = queue.SimpleQueue()
        self.pack = RunningPack(
            [lease], 0, client, Spool(spool_dir()), _log_dir(), threading.Event(),
            on_points=lambda _index, points: self.points.put(points),
            report_patience_s=REPORT_PATIENCE_S,
        )
        self.n_evaluations = 0

    def report(self, metrics: dict[str, Any]) -> None:
        """To Tune, with what the driver needs to settle the job should this trial die:
        its ids and lease. ``evaluations`` is ASHA's clock."""
        from ray import tune

        tune.report({**metrics, "job_id": self.lease.job_id, "lease_id": self.lease.lease_id,
                     "evaluations": self.n_evaluations})

    def run(self) -> None:
        self.report({"claimed": 1})
        self.pack.start(self.device)
        last_eval: dict[str, Any] = {}
        try:
            while not (self.pack.done and self.points.empty()):
                try:
                    points = self.points.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                for evaluation in evaluations(points):
                    last_eval = evaluation
                    self.n_evaluations += 1
                    self.report(evaluation)
        except SystemExit:  # Tune stopped the trial (ASHA): end the job and say why, quickly
            self.pack.stop(Outcome.failed, error=stopped_early(last_eval))
            self.pack.join()
            raise
        self._finish()

    def _finish(self) -> None:
        [slot] = self.pack.slots
        if slot.outcome is Outcome.succeeded and slot.report is not None:
            # Taken by the API, or waiting in the spool for the driver to resend it.
            self.n_evaluations = max(self.n_evaluations, 1)
            self.report({**final_metrics(slot.report.result), "outcome": slot.outcome.value})
        elif slot.outcome is Outcome.failed:
            error = slot.report.error if slot.report else "its process failed"
            raise RuntimeError(f"job {self.lease.job_id} failed: {error}")
        else:  # cancelled or lost: nothing more to report
            self.report({"outcome": (slot.outcome or Outcome.lost).value})


def evaluations(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Tune report per evaluation: the ``eval/*`` points of each step, with that step."""
    by_step: dict[int, dict[str, Any]] = {}
    for point in points:
        name, value = point.get("name", ""), point.get("value")
        if name.startswith("eval/") and isinstance(value, int | float):
            by_step.setdefault(int(point["step"]), {})[name] = float(value)
    return [{"step": step, **values} for step, values in sorted(by_step.items())]


def final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The result's numbers, also under ``eval/`` names, so the ASHA metric exists at the end
    even for a job that never evaluated on the way (a synthetic job)."""
    numbers = {k: float(v) for k, v in result.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    return {**numbers, **{f"eval/{k}": v for k, v in numbers.items() if f"eval/{k}" not in result}}


def stopped_early(report: dict[str, Any]) -> str:
    """The error a job stopped by Tune's scheduler gets, naming its last evaluation."""
    if not report or "step" not in report:
        return "stopped early by Ray Tune's scheduler before its first evaluation"
    values = ", ".join(f"{k}={v:.4g}" for k, v in report.items()
                       if k.startswith("eval/") and isinstance(v, int | float))
    return f"stopped early by Ray Tune's scheduler after step {report['step']} ({values})"

