"""Section a: every adapter method x {Tucker, CP} trains a few steps through ``run_training``.

Each run records whether its loss stayed finite and fell (first logged window against the last),
its median step time and its peak memory (``torch.cuda.max_memory_allocated`` on CUDA).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from typing import Any

from tools.gpu_check.profile import Profile
from tools.gpu_check.report import Section, log

RANK = 4
LEARNING_RATE = 5.0e-3


def method_runs(profile: Profile) -> list[tuple[str, str]]:
    """LoRA once (it has no factorization) and every tensor construction with each one."""
    from tenslora.core.methods import FACTORIZATIONS, METHODS

    if profile.methods is not None:
        return list(profile.methods)
    return [
        (name, factorization)
        for name, method in METHODS.items()
        for factorization in (FACTORIZATIONS if method.is_tensor else ("tucker",))
    ]


def train_spec(method: str, factorization: str, profile: Profile) -> dict[str, Any]:
    steps = profile.steps
    return {
        "kind": "train", "task": "synthetic_text", "backbone": "minilm", "seed": 0,
        "tag": f"gpu-check {method} {factorization}",
        "adapter": {"method": method, "factorization": factorization, "ranks": RANK},
        "optim": {"lr": LEARNING_RATE},
        "train": {
            "max_steps": steps, "batch_size": profile.batch_size,
            "max_length": profile.max_length, "precision": profile.precision,
            "log_every": max(1, steps // 6), "eval_every": steps, "max_eval_samples": 64,
        },
    }


def train_one(method: str, factorization: str, profile: Profile) -> dict[str, Any]:
    from tenslora.training.loop import run_training

    losses: list[float] = []
    stamps: list[float] = []

    def sink(points: list[dict[str, Any]]) -> None:
        losses.extend(p["value"] for p in points if p["name"] == "train/loss")

    def progress(_step: int, _total: int, _loss: float | None) -> None:
        stamps.append(time.perf_counter())

    result = run_training(train_spec(method, factorization, profile), sink,
                          device=profile.device, progress=progress)
    intervals = [b - a for a, b in itertools.pairwise(stamps)]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    return {
        "steps": result["steps"],
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "finite": finite,
        "falling": finite and len(losses) > 1 and losses[-1] < losses[0],
        "step_ms": 1000 * statistics.median(intervals) if intervals else None,
        "samples_per_s": result["samples_per_s"],
        "peak_memory_mb": result["peak_memory_mb"],
        "adapter_params": result["adapter_params"],
        "accuracy": result["accuracy"],
    }


def run_section(section: Section, profile: Profile, deadline: float) -> None:
    import torch

    section.fact("device", profile.device)
    section.fact("precision", profile.precision if profile.has_gpu else "fp32 (CPU autocast off)")
    section.fact("shape", f"{profile.steps} steps, batch {profile.batch_size}, "
                          f"max length {profile.max_length}, rank {RANK}, lr {LEARNING_RATE}")
    failures = []
    runs = method_runs(profile)
    for method, factorization in runs:
        row: dict[str, Any] = {"method": method, "factorization": factorization}
        if time.monotonic() > deadline:
            failures.append(f"{method}/{factorization} (no time left)")
            continue
        began = time.monotonic()
        try:
            row |= train_one(method, factorization, profile)
        except Exception as error:  # one method failing must not hide the others' figures
            row["error"] = f"{type(error).__name__}: {error}"
        row["wall_s"] = round(time.monotonic() - began, 1)
        if profile.has_gpu:
            torch.cuda.empty_cache()  # the next sections read the GPU's free memory
        loss_bad = not row.get("finite") or (profile.checks_loss and not row.get("falling"))
        if row.get("error") or loss_bad:
            failures.append(f"{method}/{factorization}")
        log(f"  {method}/{factorization}: loss {_fmt(row.get('loss_first'))} -> "
            f"{_fmt(row.get('loss_last'))}, step {_fmt(row.get('step_ms'))} ms, peak "
            f"{_fmt(row.get('peak_memory_mb'))} MiB {row.get('error', '')}")
        section.row("runs", row)
    section.fact("runs", len(runs))
    if not profile.checks_loss:
        section.note("CPU rehearsal: too few steps for the loss to have to fall; only finite "
                     "losses are required")
    section.fact("not finite, not falling or failed", failures or "none")
    if failures:
        raise AssertionError(f"{len(failures)} runs not finite, not falling or failed: "
                             + ", ".join(failures))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
