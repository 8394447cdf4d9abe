"""One job of a pack: what its owner hands in (:class:`JobSink`), what it gets back
(:class:`JobResult`), and the job's own training state (:class:`JobRun`): data order, optimiser,
schedule, loss window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from tenslora.adapters.model import head_parameters
from tenslora.adapters.pack import PackJob
from tenslora.analysis.signals import mode_grad_norms, mode_spectra
from tenslora.core.job_spec import TrainSpec
from tenslora.core.metric_contract import GRAD_NORM, LR, metric_name
from tenslora.training.groups import param_groups
from tenslora.training.schedule import schedule
from tenslora.training.tasks import Split
from tenslora.training.telemetry import MetricPoint, Sink, prefixed, spectrum_values

#: progress(step, total_steps, loss or None) after every step; loss at log steps only.
Progress = Callable[[int, int, float | None], None]
Status = Literal["running", "succeeded", "failed", "cancelled"]


class JobSink:
    """One job's side of a pack: it receives the job's metric points (call it: it is a ``Sink``)
    and progress, and is asked before every step whether the job must stop (cancelled).

    Pass the callables, or subclass and override ``__call__`` / ``progress`` / ``should_stop``
    (a worker's lease keeper answers ``should_stop`` from its heartbeats). An exception raised
    by any of them takes this job, and only this job, out of the pack (reported failed).
    """

    def __init__(self, sink: Sink | None = None, *, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self._sink = sink
        self._progress = progress
        self._should_stop = should_stop

    def __call__(self, points: list[MetricPoint]) -> None:
        if self._sink is not None:
            self._sink(points)

    def progress(self, step: int, total_steps: int, loss: float | None) -> None:
        if self._progress is not None:
            self._progress(step, total_steps, loss)

    def should_stop(self) -> bool:
        return self._should_stop is not None and bool(self._should_stop())


class TrainingFailed(RuntimeError):
    """The run stopped without a result: its loss became non-finite, or it was cancelled."""


@dataclass
class JobResult:
    """How one job of a pack ended. ``metrics`` is ``run_training``'s flat dict for a succeeded
    job; for a failed or cancelled one, the steps it did and its last evaluation, if any."""

    status: Literal["succeeded", "failed", "cancelled"]
    metrics: dict[str, float]
    error: str | None = None
    #: what a hook of the job raised, for a caller that wants it re-raised (``run_training``)
    exception: BaseException | None = field(default=None, repr=False)


@dataclass
class Tracker:
    """Evaluations so far and the loss window since the last log step."""

    history: list[dict[str, float]]
    loss_sum: torch.Tensor
    loss_count: int = 0
    samples: int = 0
    train_seconds: float = 0.0

    def best(self, metric: str) -> float:
        return max(h[metric] for h in self.history)


@dataclass
class JobRun:
    spec: TrainSpec
    job: PackJob
    train: Split
    sink: JobSink
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    tracker: Tracker
    status: Status = "running"
    error: str | None = None
    exception: BaseException | None = None
    steps: int = 0
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def index(self) -> int:
        return self.job.index

    @property
    def running(self) -> bool:
        return self.status == "running"

    def stop(self, status: Status, error: str | None = None,
             exception: BaseException | None = None) -> None:
        """Take the job out of the pack; its optimiser state is freed at once."""
        self.status, self.error, self.exception = status, error, exception
        self.optimizer.state.clear()

    def new_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(self.train), generator=generator).numpy()


def prepare_job(spec: TrainSpec, job: PackJob, train: Split, sink: JobSink, total_steps: int,
                amp_dtype: torch.dtype | None, device: torch.device) -> JobRun:
    """The job's optimiser over its adapter and head, and its lr schedule."""
    groups = param_groups(job, head_parameters(job), spec.optim)
    optimizer = torch.optim.AdamW(groups, lr=spec.optim.lr, weight_decay=spec.optim.weight_decay)
    lr_lambda = schedule(total_steps, spec.optim.warmup_ratio, spec.optim.lr, spec.optim.min_lr)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return JobRun(spec, job, train, sink, optimizer,
                  torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda), scaler,
                  Tracker([], torch.zeros((), device=device)))


def optimizer_step(run: JobRun) -> None:
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()


def pre_step_values(run: JobRun) -> dict[str, float]:
    """Logged before the update: the lrs this step uses and the per-mode gradient norms."""
    values = {metric_name(LR, group["name"]): group["lr"] for group in run.optimizer.param_groups}
    return values | prefixed(GRAD_NORM, mode_grad_norms(run.job))


def post_step_values(run: JobRun) -> dict[str, float]:
    """Logged after the update: the spectra of the adapter as the step left it."""
    return spectrum_values(mode_spectra(run.job))
