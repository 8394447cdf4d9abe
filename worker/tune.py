"""``tenslora sweep tune``: run a sweep file's jobs as Ray Tune trials, recorded by the API.

The driver submits the sweep through the API (so it is stored, expanded and validated like any
other), lists its jobs, and runs one Tune trial per job on the local or joined Ray cluster
(:mod:`worker.tune_trial`). Each trial takes one GPU, or a fraction when the job's memory
estimate lets several share one; ASHA, when asked, stops trials on an ``eval/*`` metric reported
at every evaluation. Sweep, jobs, metrics and results land in the same database, so
``tenslora results`` and the dashboard show the sweep like any other.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.client import ApiClient
from protocol.errors import ApiError, ApiRejected
from protocol.vocabulary import JobStatus, Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneOptions:
    asha_metric: str | None = None  # e.g. "eval/mcc"; None: every trial runs to its end
    mode: str = "max"
    ray_address: str | None = None  # None: start a local Ray
    num_cpus: int | None = None  # a local Ray's CPUs (None: all)
    num_gpus: int | None = None  # a local Ray's GPUs (None: detected)
    cpus_per_trial: float = 1.0
    gpu_memory_mb: int | None = None  # per GPU; None: every trial takes a whole GPU
    max_concurrent: int | None = None
    grace_period: int = 1
    reduction_factor: int = 2
    storage_path: str | None = None


@dataclass(frozen=True)
class TuneSummary:
    sweep_id: int
    n_jobs: int
    counts: dict[JobStatus, int]  # the sweep's jobs by status once Tune is done


class SweepRejected(Exception):
    """The API refused the sweep (HTTP 4xx); ``status`` is the code, ``str()`` its detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the API refused the sweep (HTTP {status}): {detail}")
        self.status = status


def gpu_fraction(memory_estimate_mb: int, gpu_memory_mb: int | None) -> float:
    """GPU share of one trial: 1, or 1/k when k such jobs fit in one GPU's memory.

    Ray packs fractional trials onto one GPU, so k jobs whose estimates fit share it.
    """
    if not gpu_memory_mb or memory_estimate_mb <= 0:
        return 1.0
    per_gpu = gpu_memory_mb // memory_estimate_mb
    return 1.0 if per_gpu <= 1 else round(1.0 / per_gpu, 4)


def trial_resources(
    jobs: dict[int, dict[str, Any]], options: TuneOptions, cluster_gpus: float
) -> Callable[[dict[str, Any]], dict[str, float]]:
    """Ray resources of the trial for a config: CPUs, and a GPU share where the cluster has GPUs."""

    def resources(config: dict[str, Any]) -> dict[str, float]:
        wanted = {"CPU": options.cpus_per_trial}
        if cluster_gpus > 0:
            estimate = jobs[int(config["job"]["id"])]["memory_estimate_mb"]
            wanted["GPU"] = gpu_fraction(estimate, options.gpu_memory_mb)
        return wanted

    return resources


def submit_sweep(api: ApiClient, sweep: dict[str, Any]) -> dict[str, Any]:
    try:
        # One attempt: a retried POST could store the sweep twice.
        return api.submit_sweep(sweep, retry_for_s=0).model_dump(mode="json")
    except ApiRejected as exc:
        raise SweepRejected(exc.status_code or 400, exc.detail) from None


class _SettleJobs:
    """Driver side: a job whose trial ended without finishing it (stopped by the scheduler while
    its process was being torn down, crashed, lost its lease) is failed with the reason, never
    left running or silently requeued.

    The trial itself normally settles its job within a second of ending; each settle waits for
    that first (in a thread, so Tune's loop never blocks) and only then acts. Built as a Tune
    callback by :func:`_settle_callback`; the token stays out of pickles.
    """

    GRACE_S = 15.0

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url, self.token = api_url.rstrip("/"), token
        self._threads: list[threading.Thread] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"api_url": self.api_url, "token": None, "_threads": []}  # Tune pickles callbacks

    def trial_ended(self, trial: Any, error: str | None = None) -> None:
        from worker.tune_trial import stopped_early

        last = dict(trial.last_result or {})
        outcome = last.get("outcome")
        if last.get("claimed") == 0 or not self.token:
            return  # another worker runs this job
        if outcome == Outcome.succeeded and not error:
            return  # its result was taken, or waits in the spool (``flush_spool`` sends it)
        if error:
            reason = f"its Ray Tune trial failed: {error}"
        elif outcome in (Outcome.cancelled, Outcome.lost):
            reason = "its Ray Tune trial lost the lease (heartbeats did not reach the API in time)"
        else:
            reason = stopped_early(last)
        job_id = int(trial.config["job"]["id"])
        thread = threading.Thread(target=self._settle, args=(job_id, last, reason), daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.GRACE_S + 30)

    def flush_spool(self) -> None:
        """Resends the results this host's trials spooled (the API did not take them in time)."""
        from worker.spool import Spool
        from worker.tune_trial import spool_dir

        spool = Spool(spool_dir())
        if not self.token or not spool.pending():
            return
        with ApiClient(self.api_url, self.token, retry_for_s=5.0) as client:
            sent = spool.flush(client, retry_for_s=5.0)
        log.info("resent %d spooled trial results; %d still spooled", sent, len(spool.pending()))

    def _settle(self, job_id: int, last: dict[str, Any], reason: str) -> None:
        client = ApiClient(self.api_url, self.token or "", timeout_s=30, retry_for_s=5.0)
        try:
            deadline = time.monotonic() + self.GRACE_S
            while ((status := client.get_job(job_id).status) == JobStatus.running
                   and time.monotonic() < deadline):
                time.sleep(0.5)
            lease_id = last.get("lease_id")
            if status == JobStatus.running and lease_id:
                # The last evaluation Tune saw, so the curve ends where the trial did.
                points = [{"step": int(last["step"]), "name": k, "value": float(v)}
                          for k, v in last.items() if k.startswith("eval/") and "step" in last]
                if points:
                    client.post_metrics(job_id, lease_id, points)
                client.fail(job_id, lease_id, reason)
            elif status == JobStatus.queued:  # the lease ran out first and the job was requeued
                lease = client.claim("tune-driver", "none", 10**9, job_id=job_id)
                if lease is not None:
                    client.fail(job_id, lease.lease_id, reason)
        except (ApiError, ValueError) as exc:
            log.warning("job %s: could not settle it (%s); its lease will run out", job_id, exc)
        finally:
            client.close()


def _settle_callback(settler: _SettleJobs) -> Any:
    from ray import tune

    class SettleCallback(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            settler.trial_ended(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            settler.trial_ended(trial, error=str(getattr(trial, "error_msg", "") or "error"))

    return SettleCallback()


def run_tune(
    sweep: dict[str, Any],
    api_url: str,
    token: str,
    worker_token: str | None = None,
    options: TuneOptions | None = None,
) -> TuneSummary:
    """Submit ``sweep`` and run its jobs as Tune trials; returns once every trial ended.

    ``token`` submits (submitter or admin); ``worker_token`` (default: ``token``) claims and
    reports, so it needs the worker or admin role.
    """
    options = options or TuneOptions()
    check_options(options)
    with ApiClient(api_url, token, timeout_s=60, retry_for_s=5.0) as api:
        created = submit_sweep(api, sweep)
        jobs = {job.id: job.model_dump(mode="json") for job in api.iter_jobs(created["id"])}
        log.info("sweep %s: %d jobs as Ray Tune trials", created["id"], len(jobs))
        _fit(created["id"], jobs, api_url, worker_token or token, options)
        return TuneSummary(created["id"], len(jobs), api.get_sweep(created["id"]).counts)


def _fit(
    sweep_id: int, jobs: dict[int, dict[str, Any]], api_url: str, token: str, options: TuneOptions
) -> None:
    import ray
    from ray import tune
    from ray.tune import PlacementGroupFactory

    from worker.tune_trial import run_trial

    # The claim report carries the lease but no metric yet: ASHA simply waits for one.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    started = _init_ray(options)
    try:
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        settler = _SettleJobs(api_url, token)
        wanted = trial_resources(jobs, options, cluster_gpus)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, api_url=api_url, token=token),
            lambda config: PlacementGroupFactory([wanted(config)]),
        )
        # Only ids and tags go into the config: Tune writes configs to disk, tokens stay out.
        space = {"job": tune.grid_search(
            [{"id": job_id, "tag": job["config"].get("tag")} for job_id, job in jobs.items()]
        )}
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                scheduler=_asha(options),
                max_concurrent_trials=options.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=f"tenslora-sweep-{sweep_id}",
                storage_path=options.storage_path or _default_storage(),
                callbacks=[_settle_callback(settler)],
                verbose=1,
            ),
        )
        tuner.fit()
        settler.join()
        settler.flush_spool()
    finally:
        if started:
            ray.shutdown()


def check_options(options: TuneOptions) -> None:
    """Refuse bad options before anything is submitted (raises ValueError)."""
    if options.asha_metric is not None and not options.asha_metric.startswith("eval/"):
        raise ValueError(
            f"--asha takes an eval/* metric, e.g. eval/mcc; got {options.asha_metric!r}"
        )
    if options.mode not in ("max", "min"):
        raise ValueError(f"--mode must be max or min; got {options.mode!r}")
    if options.cpus_per_trial < 0 or (options.gpu_memory_mb or 0) < 0:
        raise ValueError("--cpus-per-trial and --gpu-memory-mb must not be negative")


def _asha(options: TuneOptions) -> Any:
    if not options.asha_metric:
        return None
    from ray.tune.schedulers import ASHAScheduler

    # Rungs count evaluations: each trial reports its number of evaluations so far.
    return ASHAScheduler(
        metric=options.asha_metric,
        mode=options.mode,
        time_attr="evaluations",
        max_t=10**6,
        grace_period=options.grace_period,
        reduction_factor=options.reduction_factor,
    )


def _init_ray(options: TuneOptions) -> bool:
    """Connect to ``ray_address`` or start a local Ray; True when this call started it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if options.ray_address:
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(
            num_cpus=options.num_cpus,
            num_gpus=options.num_gpus,
            include_dashboard=False,
            object_store_memory=200 * 1024**2,
        )
    return True


def _default_storage() -> str:
    return os.path.join(tempfile.gettempdir(), "tenslora-tune")

