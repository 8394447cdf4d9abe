"""``run_training``: one fine-tuning job, from a ``TrainSpec`` to a flat dict of numbers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tenslora.analysis import mode_grad_norms, mode_spectra
from tenslora.backbones import Backbone, head_parameters, load_backbone
from tenslora.contract import EVAL, GRAD_NORM, LR, TRAIN_LOSS, metric_name
from tenslora.spec import TrainSpec
from tenslora.tasks import Split, load_task
from tenslora.training import runtime
from tenslora.training.groups import param_groups
from tenslora.training.metrics import classification_metrics
from tenslora.training.schedule import schedule
from tenslora.training.telemetry import Sink, points, prefixed, spectrum_values

#: progress(step, total_steps, loss or None); raising from it aborts the run (the worker's cancel).
Progress = Callable[[int, int, float | None], None]


@dataclass
class Run:
    spec: TrainSpec
    device: torch.device
    amp_dtype: torch.dtype | None
    backbone: Backbone
    num_labels: int
    train: Split
    validation: Split
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    total_steps: int
    baseline: float

    @property
    def model(self) -> nn.Module:
        return self.backbone.model


def _as_spec(spec: TrainSpec | Mapping[str, Any]) -> TrainSpec:
    return spec if isinstance(spec, TrainSpec) else TrainSpec.model_validate(dict(spec))


def prepare(spec: TrainSpec, device: torch.device) -> Run:
    """Data, backbone + adapter, optimiser and schedule; seeded before anything random."""
    from tenslora.model import apply_adapter

    runtime.seed_everything(spec.seed)
    task = load_task(spec.task)
    train = task.train.subsample(spec.train.max_train_samples, seed=spec.seed)
    validation = task.validation.subsample(spec.train.max_eval_samples)
    backbone = load_backbone(spec.backbone, task.num_labels, max_length=spec.train.max_length)
    apply_adapter(backbone.model, spec.adapter, train_head=True)
    head = head_parameters(backbone.model)
    for param in head:
        param.requires_grad_(True)
    backbone.model.to(device)
    groups = param_groups(backbone.model, head, spec.optim)
    optimizer = torch.optim.AdamW(groups, lr=spec.optim.lr, weight_decay=spec.optim.weight_decay)
    steps_per_epoch = math.ceil(len(train) / spec.train.batch_size)
    total_steps = steps_per_epoch * spec.train.epochs
    if spec.train.max_steps is not None:
        total_steps = min(total_steps, spec.train.max_steps)
    lr_lambda = schedule(total_steps, spec.optim.warmup_ratio, spec.optim.lr, spec.optim.min_lr)
    amp_dtype = runtime.autocast_dtype(spec.train.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return Run(spec, device, amp_dtype, backbone, task.num_labels, train, validation, optimizer,
               torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda), scaler,
               steps_per_epoch, total_steps, task.majority_baseline())


def _batch(run: Run, split: Split, index: np.ndarray) -> tuple[dict[str, torch.Tensor],
                                                               torch.Tensor]:
    inputs = run.backbone.encode([split.inputs[i] for i in index])
    labels = torch.from_numpy(split.labels[index])
    return ({k: v.to(run.device) for k, v in inputs.items()}, labels.to(run.device))


def evaluate(run: Run) -> dict[str, float]:
    """Accuracy, MCC, macro F1 and mean loss on the validation split."""
    run.model.eval()
    predictions, losses = [], []
    size = 2 * run.spec.train.batch_size
    with torch.no_grad(), runtime.autocast(run.device, run.amp_dtype):
        for start in range(0, len(run.validation), size):
            index = np.arange(start, min(start + size, len(run.validation)))
            inputs, labels = _batch(run, run.validation, index)
            logits = run.model(**inputs).logits.float()
            losses.append(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            predictions.append(logits.argmax(-1))
    run.model.train()
    predicted = torch.cat(predictions).cpu().numpy()
    metrics = classification_metrics(run.validation.labels, predicted, run.num_labels)
    metrics["loss"] = float(torch.stack(losses).sum()) / len(run.validation)
    return metrics


def train_step(run: Run, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Forward and backward; returns the detached loss. Gradients stay for the metrics."""
    with runtime.autocast(run.device, run.amp_dtype):
        logits = run.model(**inputs).logits
    loss = nn.functional.cross_entropy(logits.float(), labels)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)  # true gradient norms for the metrics
    else:
        loss.backward()
    return loss.detach()


def optimizer_step(run: Run) -> None:
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()


def pre_step_values(run: Run) -> dict[str, float]:
    """Logged before the update: the lrs this step uses and the per-mode gradient norms."""
    values = {metric_name(LR, group["name"]): group["lr"] for group in run.optimizer.param_groups}
    return values | prefixed(GRAD_NORM, mode_grad_norms(run.model))


def post_step_values(run: Run) -> dict[str, float]:
    """Logged after the update: the spectra of the adapter as the step left it."""
    return spectrum_values(mode_spectra(run.model))


@dataclass
class Tracker:
    """Evaluations so far and the loss window since the last log step."""

    history: list[dict[str, float]]
    loss_sum: torch.Tensor
    loss_count: int = 0
    samples: int = 0

    def best(self, metric: str) -> float:
        return max(h[metric] for h in self.history)


def _evaluate_and_stream(run: Run, step: int, tracker: Tracker, sink: Sink | None) -> None:
    metrics = evaluate(run)
    tracker.history.append(metrics)
    if sink is not None:
        sink(points(step, prefixed(EVAL, metrics)))


def _epoch_order(run: Run, epoch: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(run.spec.seed * 1_000_003 + epoch)
    return torch.randperm(len(run.train), generator=generator).numpy()


def _train(run: Run, sink: Sink | None, progress: Progress | None) -> tuple[Tracker, int, float]:
    """The loop; returns the tracker, the steps done and the seconds spent in training steps."""
    spec = run.spec.train
    tracker = Tracker([], torch.zeros((), device=run.device))
    step, train_seconds = 0, 0.0
    run.model.train()
    while step < run.total_steps:
        order = _epoch_order(run, step // run.steps_per_epoch)
        for start in range(0, len(order), spec.batch_size):
            began = time.perf_counter()
            inputs, labels = _batch(run, run.train, order[start:start + spec.batch_size])
            tracker.loss_sum += train_step(run, inputs, labels)
            tracker.loss_count += 1
            tracker.samples += len(labels)
            step += 1
            logging = step % spec.log_every == 0 or step == run.total_steps
            values = pre_step_values(run) if logging else {}
            optimizer_step(run)
            if logging:
                values[TRAIN_LOSS] = float(tracker.loss_sum) / tracker.loss_count
                values |= post_step_values(run)
                tracker.loss_sum.zero_()
                tracker.loss_count = 0
                if sink is not None:
                    sink(points(step, values))
            train_seconds += time.perf_counter() - began
            if progress is not None:
                progress(step, run.total_steps, values.get(TRAIN_LOSS))
            end_of_epoch = step % run.steps_per_epoch == 0
            due = step % spec.eval_every == 0 if spec.eval_every else end_of_epoch
            if due or step == run.total_steps:
                _evaluate_and_stream(run, step, tracker, sink)
            if step == run.total_steps:
                break
    return tracker, step, train_seconds


def run_training(
    spec: TrainSpec | Mapping[str, Any],
    sink: Sink | None = None,
    *,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Fine-tune the spec's backbone with its adapter on its task; return a flat dict of numbers.

    ``sink`` receives a list of metric points ``{"step", "name", "value"}`` at every log step and
    after every evaluation. ``progress(step, total_steps, loss)`` is called after every step.
    """
    from tenslora.model import count_adapter_parameters

    spec = _as_spec(spec)
    device = runtime.resolve_device(device)
    runtime.reset_peak_memory(device)
    started = time.perf_counter()
    run = prepare(spec, device)
    tracker, steps, train_seconds = _train(run, sink, progress)
    final = tracker.history[-1]
    adapter_params = count_adapter_parameters(run.model)
    head_params = sum(p.numel() for p in head_parameters(run.model))
    lora_params = _lora_parameters(run)
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
        "trainable_params": sum(p.numel() for p in run.model.parameters() if p.requires_grad),
        "lora_params": lora_params,
        "percent_of_lora": 100.0 * adapter_params / lora_params,
        "steps": steps,
        "epochs": steps / run.steps_per_epoch,
        "train_samples": len(run.train),
        "eval_samples": len(run.validation),
        "wall_s": time.perf_counter() - started,
        "train_s": train_seconds,
        "samples_per_s": tracker.samples / train_seconds if train_seconds > 0 else 0.0,
        "peak_memory_mb": runtime.peak_memory_mb(device),
    }


def _lora_parameters(run: Run) -> int:
    """LoRA at the rank of the adapter's Input mode, on the same projections and backbone."""
    from tenslora.config import AdapterConfig
    from tenslora.presets import predict_parameters

    config = run.spec.adapter
    lora = AdapterConfig("lora", ranks=config.mode_ranks()["Input"],
                         projections=config.projections)
    b = run.backbone
    return predict_parameters(lora, b.d_model, b.n_layers, b.n_heads)
