"""The paper's lr schedule: linear warmup to the peak, then cosine annealing to a floor."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def lr_factor(step: int, total_steps: int, warmup_steps: int, floor_ratio: float) -> float:
    """Multiplier of the peak lr for optimiser step ``step`` (0-based).

    Warmup: ``(step + 1) / warmup_steps``, reaching the peak on the last warmup step. Then cosine
    from 1 at the first step after warmup down to ``floor_ratio`` (``min_lr / lr``) on the last
    step, ``total_steps - 1``; it stays at the floor past it.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps - 1
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - warmup_steps) / decay_steps)
    return floor_ratio + (1.0 - floor_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule(total_steps: int, warmup_ratio: float, lr: float,
             min_lr: float) -> Callable[[int], float]:
    """The ``lr_lambda`` of ``torch.optim.lr_scheduler.LambdaLR`` for this run.

    Every param group shares the shape; a group with an lr multiplier also has its floor
    multiplied, so the ratios between groups hold throughout training.
    """
    warmup = warmup_steps_for(total_steps, warmup_ratio)
    floor_ratio = min_lr / lr

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup, floor_ratio)

    return factor
