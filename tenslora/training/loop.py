"""``run_pack``: k fine-tuning jobs in one process over one frozen backbone (docs/training.md,
"Packs"); ``run_training``: one job, a pack of one.

Each step concatenates the active jobs' batches, runs the backbone once, and backpropagates the
sum of the jobs' own mean losses, which gives each job exactly its own gradients (no parameter is
shared, and no layer mixes rows). Each job keeps its own optimiser, lr schedule, data order and
dropout stream (:mod:`tenslora.training.jobs`), so its numbers do not depend on its pack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tenslora.adapters.model import head_parameters
from tenslora.adapters.pack import Pack, build_pack
from tenslora.core.job_spec import TrainSpec
from tenslora.core.metric_contract import EVAL, TRAIN_LOSS
from tenslora.core.pack_key import pack_mismatch
from tenslora.training import runtime
from tenslora.training.backbones import Backbone, load_backbone
from tenslora.training.jobs import (
    JobResult,
    JobRun,
    JobSink,
    Progress,
    TrainingFailed,
    optimizer_step,
    post_step_values,
    pre_step_values,
    prepare_job,
)
from tenslora.training.metrics import classification_metrics
from tenslora.training.tasks import Split, load_task
from tenslora.training.telemetry import Sink, points, prefixed


@dataclass
class PackRun:
    """The shared part of a pack: backbone, validation data, step counts; and its jobs."""

    device: torch.device
    amp_dtype: torch.dtype | None
    backbone: Backbone
    pack: Pack
    num_labels: int
    validation: Split
    baseline: float
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    jobs: list[JobRun]

    @property
    def active(self) -> list[JobRun]:
        return [job for job in self.jobs if job.running]


def _as_spec(spec: TrainSpec | Mapping[str, Any]) -> TrainSpec:
    return spec if isinstance(spec, TrainSpec) else TrainSpec.model_validate(dict(spec))


def prepare(specs: Sequence[TrainSpec], sinks: Sequence[JobSink], device: torch.device,
            backbone: Backbone | None = None) -> PackRun:
    """Data, the backbone laid out for every job, each job's optimiser and schedule."""
    first = specs[0]
    mismatch = pack_mismatch(list(specs))
    if mismatch is not None:
        raise ValueError(
            f"these specs cannot train in one pack (tenslora.core.pack_key): {mismatch}"
        )
    runtime.seed_everything(first.seed)
    task = load_task(first.task)
    trains = [task.train.subsample(s.train.max_train_samples, seed=s.seed) for s in specs]
    validation = task.validation.subsample(first.train.max_eval_samples)
    if backbone is None:
        backbone = load_backbone(first.backbone, task.num_labels, max_length=first.train.max_length)
    pack = build_pack(backbone.model, [s.adapter for s in specs],
                      [s.seed for s in specs], device=device)
    loop = first.train
    steps_per_epoch = math.ceil(len(trains[0]) / loop.batch_size)
    total_steps = steps_per_epoch * loop.epochs
    if loop.max_steps is not None:
        total_steps = min(total_steps, loop.max_steps)
    amp_dtype = runtime.autocast_dtype(loop.precision, device)
    jobs = [prepare_job(spec, pack.job(i), trains[i], sink, total_steps, amp_dtype, device)
            for i, (spec, sink) in enumerate(zip(specs, sinks, strict=True))]
    pack.train()  # transformers loads models in eval mode: no dropout
    return PackRun(device, amp_dtype, backbone, pack, task.num_labels, validation,
                   task.majority_baseline(), loop.batch_size, steps_per_epoch, total_steps, jobs)


def _encode(run: PackRun, inputs: list[Any]) -> dict[str, torch.Tensor]:
    return {k: v.to(run.device) for k, v in run.backbone.encode(inputs).items()}


def _hook(job: JobRun, call: Callable[..., Any], *args: Any) -> Any:
    """Call one of the job's hooks; what it raises takes this job out of the pack, failed."""
    try:
        return call(*args)
    except Exception as exc:  # any error of one job's owner ends that job only
        job.stop("failed", f"{type(exc).__name__}: {exc}", exc)
        return None


def _lengths(attention_mask: torch.Tensor | None, jobs: int) -> list[int] | None:
    """Each job's longest example in the batch (its rows are consecutive): the length its batch
    alone would be padded to, which its dropout masks are drawn at."""
    if attention_mask is None:
        return None
    return [int(rows.sum(-1).max()) for rows in attention_mask.chunk(jobs)]


def train_step(run: PackRun, jobs: Sequence[JobRun], start: int) -> list[torch.Tensor]:
    """Forward the jobs' batches at ``start`` of their orders as one batch, backward the sum of
    their losses; returns each job's detached loss. Gradients stay for the metrics."""
    index = [job.order[start:start + run.batch_size] for job in jobs]
    rows = len(index[0])
    encoded = run.backbone.encode([job.train.inputs[i]
                                   for job, idx in zip(jobs, index, strict=True) for i in idx])
    lengths = _lengths(encoded.get("attention_mask"), len(jobs))
    inputs = {k: v.to(run.device) for k, v in encoded.items()}
    labels = torch.from_numpy(np.concatenate([job.train.labels[idx]
                                              for job, idx in zip(jobs, index, strict=True)]))
    labels = labels.to(run.device)
    with runtime.autocast(run.device, run.amp_dtype):
        logits = run.pack([job.index for job in jobs], rows, lengths, **inputs)
    logits = logits.float()
    losses = [nn.functional.cross_entropy(logits[i * rows:(i + 1) * rows],
                                          labels[i * rows:(i + 1) * rows])
              for i in range(len(jobs))]
    scaled = [loss if job.scaler is None else job.scaler.scale(loss)
              for job, loss in zip(jobs, losses, strict=True)]
    torch.stack(scaled).sum().backward()
    for job in jobs:
        if job.scaler is not None:
            job.scaler.unscale_(job.optimizer)  # true gradient norms for the metrics
    return [loss.detach() for loss in losses]


def evaluate(run: PackRun, jobs: Sequence[JobRun]) -> list[dict[str, float]]:
    """Accuracy, MCC, macro F1 and mean loss on the validation split, for every job in one pass
    per batch (the batch repeated once per job)."""
    run.pack.eval()
    predictions: list[list[torch.Tensor]] = [[] for _ in jobs]
    losses: list[list[torch.Tensor]] = [[] for _ in jobs]
    size = 2 * run.batch_size
    with torch.no_grad(), runtime.autocast(run.device, run.amp_dtype):
        for start in range(0, len(run.validation), size):
            index = np.arange(start, min(start + size, len(run.validation)))
            inputs = _encode(run, [run.validation.inputs[i] for i in index])
            inputs = {k: v.repeat(len(jobs), *([1] * (v.dim() - 1))) for k, v in inputs.items()}
            labels = torch.from_numpy(run.validation.labels[index]).to(run.device)
            logits = run.pack([job.index for job in jobs], len(index), **inputs).float()
            for i, own in enumerate(logits.split(len(index))):
                losses[i].append(nn.functional.cross_entropy(own, labels, reduction="sum"))
                predictions[i].append(own.argmax(-1))
    run.pack.train()
    results = []
    for job_predictions, job_losses in zip(predictions, losses, strict=True):
        predicted = torch.cat(job_predictions).cpu().numpy()
        metrics = classification_metrics(run.validation.labels, predicted, run.num_labels)
        metrics["loss"] = float(torch.stack(job_losses).sum()) / len(run.validation)
        results.append(metrics)
    return results


def _evaluate_and_stream(run: PackRun, step: int) -> None:
    jobs = run.active
    for job, metrics in zip(jobs, evaluate(run, jobs), strict=True):
        job.tracker.history.append(metrics)
        _hook(job, job.sink, points(step, prefixed(EVAL, metrics)))


def _poll_stops(run: PackRun) -> None:
    for job in run.active:
        if _hook(job, job.sink.should_stop):
            job.stop("cancelled", "cancelled while training")


def _log_and_step(run: PackRun, jobs: Sequence[JobRun], losses: Sequence[torch.Tensor],
                  step: int) -> None:
    """Each job's optimiser step and, at its log steps, its metric points; a job whose loss is
    not finite leaves the pack (one device sync per step, for every job at once)."""
    logging = [step % job.spec.train.log_every == 0 or step == run.total_steps for job in jobs]
    before = [pre_step_values(job) if log else {} for job, log in zip(jobs, logging, strict=True)]
    for job, loss in zip(jobs, losses, strict=True):
        job.tracker.loss_sum += loss
        job.tracker.loss_count += 1
        job.steps = step
        optimizer_step(job)
    values = torch.stack(list(losses)).tolist()
    for job, loss, log, logged in zip(jobs, values, logging, before, strict=True):
        if not math.isfinite(loss):
            job.stop("failed", f"the training loss is not finite ({loss}) at step {step}")
            continue
        if log:
            logged[TRAIN_LOSS] = float(job.tracker.loss_sum) / job.tracker.loss_count
            logged |= post_step_values(job)
            job.tracker.loss_sum.zero_()
            job.tracker.loss_count = 0
            _hook(job, job.sink, points(step, logged))
        if job.running:
            _hook(job, job.sink.progress, step, run.total_steps, logged.get(TRAIN_LOSS))


def pack_step(run: PackRun, jobs: Sequence[JobRun], start: int, step: int) -> None:
    """Training step number ``step`` of ``jobs`` on their batches at ``start`` of their orders:
    forward, backward, each job's update and metric points; non-finite jobs leave."""
    _log_and_step(run, jobs, train_step(run, jobs, start), step)


def _train(run: PackRun) -> None:
    loop = run.jobs[0].spec.train
    step = 0
    while step < run.total_steps and run.active:
        for job in run.active:
            job.new_epoch(step // run.steps_per_epoch)
        for start in range(0, len(run.jobs[0].train), run.batch_size):
            _poll_stops(run)
            jobs = run.active
            if not jobs:
                return
            began = time.perf_counter()
            step += 1
            pack_step(run, jobs, start, step)
            for job in jobs:
                job.tracker.samples += min(run.batch_size, len(job.order) - start)
                job.tracker.train_seconds += time.perf_counter() - began
            end_of_epoch = step % run.steps_per_epoch == 0
            due = step % loop.eval_every == 0 if loop.eval_every else end_of_epoch
            if (due or step == run.total_steps) and run.active:
                _evaluate_and_stream(run, step)
            if step == run.total_steps:
                break


def run_pack(specs: Sequence[TrainSpec | Mapping[str, Any]],
             sinks: Sequence[JobSink | Sink | None], *, device: str | torch.device | None = None,
             backbone: Backbone | None = None,
             adapter_dirs: Sequence[str | Path | None] | None = None) -> list[JobResult]:
    """Train the jobs ``specs`` together in this process; one result per spec, in order.

    The specs must share a ``tenslora.core.pack_key.pack_key``. ``sinks[i]`` is job i's: a
    :class:`JobSink` (metric points, progress, ``should_stop`` polled before every step) or a
    plain metric sink. A job whose loss becomes non-finite, whose hook raises, or whose
    ``should_stop`` answers True leaves the pack at once (failed / cancelled); the others go on.
    ``backbone`` replaces the catalog's (a fresh one: the pack changes it in place).
    ``adapter_dirs[i]``: where ``save_adapter`` writes job i's trained adapter (head included)
    if it succeeds: the model whose last evaluation its result reports.
    """
    if not specs or len(specs) != len(sinks):
        raise ValueError(f"run_pack needs one sink per spec; got {len(specs)} specs and "
                         f"{len(sinks)} sinks")
    parsed = [_as_spec(spec) for spec in specs]
    hooks = [sink if isinstance(sink, JobSink) else JobSink(sink) for sink in sinks]
    device = runtime.resolve_device(device)
    runtime.reset_peak_memory(device)
    started = time.perf_counter()
    run = prepare(parsed, hooks, device, backbone)
    _train(run)
    _save_adapters(run, adapter_dirs or [None] * len(run.jobs))
    wall_s = time.perf_counter() - started
    peak = runtime.peak_memory_mb(device)
    return [_result(run, job, wall_s, peak) for job in run.jobs]


def _save_adapters(run: PackRun, folders: Sequence[str | Path | None]) -> None:
    from tenslora.adapters.persistence import save_adapter

    for job, folder in zip(run.jobs, folders, strict=True):
        if folder is not None and job.running:
            save_adapter(job.job, folder)


def _result(run: PackRun, job: JobRun, wall_s: float, peak_memory_mb: float) -> JobResult:
    if not job.running:
        assert job.status != "succeeded"
        return JobResult(job.status, {"steps": job.steps}, job.error,  # type: ignore[arg-type]
                         job.exception)
    job.status = "succeeded"
    return JobResult("succeeded", _metrics(run, job, wall_s, peak_memory_mb))


def _metrics(run: PackRun, job: JobRun, wall_s: float, peak_memory_mb: float) -> dict[str, float]:
    from tenslora.adapters.model import count_adapter_parameters

    tracker = job.tracker
    final = tracker.history[-1]
    adapter_params = count_adapter_parameters(job.job)
    head_params = sum(p.numel() for p in head_parameters(job.job))
    lora_params = _lora_parameters(run, job)
    return {
        "accuracy": final["accuracy"],
        "mcc": final["mcc"],
        "f1": final["f1"],
        "eval_loss": final["loss"],
        "best_accuracy": tracker.best("accuracy"),
        "best_mcc": tracker.best("mcc"),
        "best_f1": tracker.best("f1"),
        "majority_baseline": run.baseline,
        "adapter_params": adapter_params,
        "head_params": head_params,
        "trainable_params": sum(p.numel() for p in job.job.parameters() if p.requires_grad),
        "lora_params": lora_params,
        "percent_of_lora": 100.0 * adapter_params / lora_params,
        "steps": job.steps,
        "epochs": job.steps / run.steps_per_epoch,
        "train_samples": len(job.train),
        "eval_samples": len(run.validation),
        "wall_s": wall_s,
        "train_s": tracker.train_seconds,
        "samples_per_s": (tracker.samples / tracker.train_seconds
                          if tracker.train_seconds > 0 else 0.0),
        "peak_memory_mb": peak_memory_mb,
    }


def _lora_parameters(run: PackRun, job: JobRun) -> int:
    """LoRA at the rank of the adapter's Input mode, on the same projections and backbone."""
    from tenslora.core.adapter_config import AdapterConfig
    from tenslora.core.regimes import predict_parameters

    config = job.spec.adapter
    lora = AdapterConfig("lora", ranks=config.mode_ranks()["Input"],
                         projections=config.projections)
    b = run.backbone
    return predict_parameters(lora, b.d_model, b.n_layers, b.n_heads)


def run_training(
    spec: TrainSpec | Mapping[str, Any],
    sink: Sink | None = None,
    *,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    adapter_dir: str | Path | None = None,
) -> dict[str, float]:
    """Fine-tune the spec's backbone with its adapter on its task; return a flat dict of numbers.

    A pack of one (:func:`run_pack`). ``sink`` receives a list of metric points
    ``{"step", "name", "value"}`` at every log step and after every evaluation.
    ``progress(step, total_steps, loss)`` is called after every step; what it or ``sink`` raises
    aborts the run and is raised here. A non-finite loss raises :class:`TrainingFailed`.
    ``adapter_dir``: where ``save_adapter`` writes the trained adapter (head included), the one
    whose final evaluation the result reports.
    """
    result = run_pack([spec], [JobSink(sink, progress=progress)], device=device,
                      adapter_dirs=[adapter_dir])[0]
    if result.exception is not None:
        raise result.exception
    if result.status != "succeeded":
        raise TrainingFailed(result.error or result.status)
    return result.metrics
