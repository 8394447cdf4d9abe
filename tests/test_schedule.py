"""The lr schedule: linear warmup to the peak, cosine annealing to the floor."""

import itertools
import math

import pytest
import torch

from tenslora.training.schedule import lr_factor, schedule, warmup_steps_for


def test_warmup_rises_linearly_and_reaches_the_peak_on_its_last_step():
    factors = [lr_factor(step, 100, 10, 0.0) for step in range(10)]
    assert factors == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[-1] == 1.0


def test_cosine_starts_at_the_peak_and_ends_exactly_at_the_floor():
    total, warmup, floor = 50, 5, 0.1
    assert lr_factor(warmup, total, warmup, floor) == pytest.approx(1.0)
    assert lr_factor(total - 1, total, warmup, floor) == pytest.approx(floor)
    middle = warmup + (total - warmup - 1) / 2
    assert lr_factor(int(middle), total, warmup, floor) == pytest.approx(
        floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * int(middle - warmup)
                                                   / (total - warmup - 1)))
    )


def test_decay_never_increases_and_stays_at_the_floor_past_the_end():
    values = [lr_factor(step, 40, 4, 0.2) for step in range(4, 60)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.2)


def test_no_warmup_starts_at_the_peak():
    assert warmup_steps_for(100, 0.0) == 0
    assert lr_factor(0, 100, 0, 0.0) == 1.0


def test_warmup_steps_round_up():
    assert warmup_steps_for(100, 0.06) == 6
    assert warmup_steps_for(10, 0.06) == 1


def test_lambda_lr_keeps_the_ratio_between_groups_and_scales_their_floors():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 4e-3}])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(20, 0.1, 1e-3, 1e-4))
    seen = []
    for _ in range(20):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert all(second == pytest.approx(4 * first) for first, second in seen)
    assert seen[1] == pytest.approx([1e-3, 4e-3])  # end of the 2-step warmup: the peak
    assert seen[-1] == pytest.approx([1e-4, 4e-4])  # the floor, times the group's multiplier
