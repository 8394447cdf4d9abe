"""One Ray Tune trial of ``tenslora sweep tune``: one job of the sweep, recorded through the API.

The trial claims the job it was made for (the claim names the job id), runs it in a child
process exactly as ``tenslora-worker`` does (``worker.child``), heartbeats the lease and forwards
metric batches from a thread, and reports each evaluation to Tune so ASHA can stop it. Ray stops
a trial by raising ``SystemExit`` inside ``tune.report``; the job is then failed with a message
that says so, and kept out of the sweep's mean/std. Every report carries the job's lease, so the
driver can settle the job should the trial die before it does (``worker.tune``).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from worker.child import start_job
from worker.client import ApiClient, ApiError, Lease, LeaseLost

log = logging.getLogger(__name__)

# The trial's Ray resources decide where it runs; the memory check of the claim must not refuse.
UNLIMITED_MB = 10**9
FLUSH_S = 1.0


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
        self.client, self.lease, self.device = client, lease, device
        self._points: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.cancelled = False
        self.lost = False
        self.n_evaluations = 0

    def report(self, metrics: dict[str, Any]) -> None:
        """To Tune, with what the driver needs to settle the job should this trial die:
        its ids and lease. ``evaluations`` is ASHA's clock."""
        from ray import tune

        tune.report({**metrics, "job_id": self.lease.job_id, "lease_id": self.lease.lease_id,
                     "evaluations": self.n_evaluations})

    def run(self) -> None:
        self.report({"claimed": 1})
        log_dir = Path(tempfile.gettempdir()) / "tenslora-tune"
        child = start_job(self.lease.spec, self.device, log_dir / f"job-{self.lease.job_id}.log")
        keeper = threading.Thread(target=self._keep_lease, args=(child,), daemon=True)
        keeper.start()
        final: dict[str, Any] | None = None
        last_eval: dict[str, Any] = {}
        try:
            for event in child.events():
                if event.get("event") == "metrics":
                    points = event.get("points") or []
                    with self._lock:
                        self._points.extend(points)
                    for report in evaluations(points):
                        last_eval = report
                        self.n_evaluations += 1
                        self.report(report)
                elif event.get("event") in ("result", "error"):
                    final = event
            code = child.wait()
        except SystemExit:  # Tune stopped the trial (ASHA): end the job and say why, quickly
            child.kill()
            self._done.set()
            self._flush()  # metrics first: a failed job takes no more
            self._fail(stopped_early(last_eval))
            keeper.join(timeout=5)
            raise
        self._stop_keeper(keeper)
        self._finish(final, code)

    def _finish(self, final: dict[str, Any] | None, code: int) -> None:
        if self.cancelled or self.lost:
            self.report({"cancelled": 1})
            return
        if final and final["event"] == "result" and code == 0:
            result = dict(final.get("result") or {})
            self.client.complete(self.lease.job_id, self.lease.lease_id, result)
            self.n_evaluations = max(self.n_evaluations, 1)
            self.report(final_metrics(result))
            return
        error = (final or {}).get("error") or f"the job's process exited with code {code}"
        self._fail(error)
        raise RuntimeError(f"job {self.lease.job_id} failed: {error}")

    def _fail(self, error: str) -> None:
        try:
            self.client.fail(self.lease.job_id, self.lease.lease_id, error)
        except ApiError as exc:  # the lease runs out and the API requeues the job
            log.warning("job %s: could not report the failure: %s", self.lease.job_id, exc)

    def _stop_keeper(self, keeper: threading.Thread) -> None:
        self._done.set()
        keeper.join(timeout=30)
        self._flush()

    def _keep_lease(self, child: Any) -> None:
        """Heartbeat and metric flushes until the run ends; a cancelled sweep kills the child."""
        interval = _heartbeat_interval(self.lease)
        next_beat = time.monotonic() + interval
        while not self._done.wait(FLUSH_S):
            self._flush()
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            try:
                if self.client.heartbeat(self.lease, retry_for_s=2.0):
                    self.cancelled = True
                    child.kill()
            except LeaseLost:
                self.lost = True
                child.kill()
            except ApiError as exc:
                log.warning("job %s: heartbeat failed: %s", self.lease.job_id, exc)

    def _flush(self) -> None:
        with self._lock:
            batch, self._points = self._points, []
        if batch:
            try:
                self.client.post_metrics(self.lease.job_id, self.lease.lease_id, batch)
            except ApiError as exc:
                log.warning("job %s: metrics not stored: %s", self.lease.job_id, exc)


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


def _heartbeat_interval(lease: Lease) -> float:
    """A third of the lease, so two missed beats still leave time for a third."""
    from datetime import UTC, datetime

    if not lease.lease_expires_at:
        return 10.0
    expires = datetime.fromisoformat(str(lease.lease_expires_at).replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    left = (expires - datetime.now(UTC)).total_seconds()
    return max(1.0, left / 3)
