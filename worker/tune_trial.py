"""One Ray Tune trial of ``tenslora sweep tune``: one job of the sweep, recorded through the API.

The trial claims the job it was made for (the claim names the job id), runs it in a child
process exactly as ``tenslora-worker`` does (``worker.child``), keeps its lease with the same
lease keeper (``worker.lease``: heartbeats, metric batches, cancel detection, the spooled final
report), and reports each evaluation to Tune so ASHA can stop it. Ray stops a trial by raising
``SystemExit`` inside ``tune.report``; the job is then failed with a message that says so, and
kept out of the sweep's mean/std. Every report carries the job's lease, so the driver can settle
the job should the trial die before it does (``worker.tune``). A result the API does not take
in time stays in this host's spool (``spool_dir``); the trial says ``spooled`` and the driver
resends it rather than failing the job.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, Lease
from worker.child import JobProcess, start_job
from worker.lease import LeaseKeeper
from worker.spool import Spool

log = logging.getLogger(__name__)

# The trial's Ray resources decide where it runs; the memory check of the claim must not refuse.
UNLIMITED_MB = 10**9
REPORT_PATIENCE_S = 120.0  # a trial keeps its lease and resends its result this long
STOPPED_REPORT_RETRY_S = 5.0  # Tune waits for a stopped trial: fail it quickly or spool it


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
        self._child: JobProcess | None = None
        self.keeper = LeaseKeeper(client, lease, Spool(spool_dir()), on_stop=self._kill_child)
        self.n_evaluations = 0

    def report(self, metrics: dict[str, Any]) -> None:
        """To Tune, with what the driver needs to settle the job should this trial die:
        its ids and lease. ``evaluations`` is ASHA's clock."""
        from ray import tune

        tune.report({**metrics, "job_id": self.lease.job_id, "lease_id": self.lease.lease_id,
                     "evaluations": self.n_evaluations})

    @property
    def adapter_dir(self) -> Path:
        return _log_dir() / f"job-{self.lease.job_id}-attempt{self.lease.attempt}-adapter"

    def run(self) -> None:
        self.report({"claimed": 1})
        log_dir = _log_dir()
        child = start_job(self.lease.spec, self.device, log_dir / f"job-{self.lease.job_id}.log",
                          adapter_dir=self.adapter_dir)
        self._child = child
        self.keeper.start()
        final: dict[str, Any] | None = None
        last_eval: dict[str, Any] = {}
        try:
            for event in child.events():
                if event.get("event") == "metrics":
                    points = event.get("points") or []
                    self.keeper.add_points(points)
                    for report in evaluations(points):
                        last_eval = report
                        self.n_evaluations += 1
                        self.report(report)
                elif event.get("event") in ("result", "error"):
                    final = event
            code = child.wait()
        except SystemExit:  # Tune stopped the trial (ASHA): end the job and say why, quickly
            child.kill()
            self.keeper.finish("fail", error=stopped_early(last_eval),
                               retry_for_s=STOPPED_REPORT_RETRY_S)
            raise
        self._finish(final, code)

    def _finish(self, final: dict[str, Any] | None, code: int) -> None:
        if self.keeper.stop_reason:  # cancelled or lost: nothing more to report
            self.keeper.close()
            self.report({"cancelled": 1})
            return
        if final and final["event"] == "result" and code == 0:
            result = dict(final.get("result") or {})
            taken = self.keeper.finish("complete", result=result, adapter_dir=self.adapter_dir,
                                       keep_trying_s=REPORT_PATIENCE_S)
            shutil.rmtree(self.adapter_dir, ignore_errors=True)  # the spool holds its zip
            self.n_evaluations = max(self.n_evaluations, 1)
            self.report({**final_metrics(result), **({} if taken else {"spooled": 1})})
            return
        error = (final or {}).get("error") or f"the job's process exited with code {code}"
        self.keeper.finish("fail", error=error)
        raise RuntimeError(f"job {self.lease.job_id} failed: {error}")

    def _kill_child(self, _reason: str) -> None:
        if self._child is not None:
            self._child.kill()


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

