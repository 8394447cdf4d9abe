"""Packs: k jobs in one process over one frozen backbone give each job its solo numbers.

CPU, float32, the offline MiniLM on the synthetic text task (short sentences, batches of 4), 50
steps: a job's per-step loss in a pack equals its solo loss within 1e-4 (relative) and its final
accuracy is within one validation example, for LoRA and every construction in Tucker and CP.
"""

import math

import pytest
import torch
from adapter_helpers import randomise, tiny_bert, token_batch, torch_threads

from tenslora import AdapterConfig, apply_adapter
from tenslora.adapters.model import get_adapter
from tenslora.adapters.pack import build_pack
from tenslora.core.job_spec import TrainSpec
from tenslora.core.pack_key import pack_key
from tenslora.training import JobSink, TrainingFailed, run_pack, run_training

STEPS = 50
EVAL_SAMPLES = 48

#: LoRA and every construction, alternating Tucker and CP, with varied optimiser settings
MIX = [
    ("lora", "tucker", 2, {}),
    ("att", "cp", 2, {"lr": 3e-3}),
    ("qkv", "tucker", 2, {"core_lr_multiplier": 4.0}),
    ("depth", "cp", 3, {}),
    ("att_qkv", "tucker", [2, 4, 2, 2], {"mode_lr_multipliers": {"Heads": 2.0}}),
    ("att_depth", "cp", 2, {"weight_decay": 0.01}),
    ("qkv_depth", "tucker", [2, 2, 3, 2], {}),
    ("att_qkv_depth", "cp", 2, {"lr": 1e-2}),
    ("att_qkv_depth", "tucker", 2, {}),
]


def _spec(method, factorization="tucker", ranks=2, optim=None, seed=0, **adapter):
    return TrainSpec.model_validate({
        "task": "synthetic_text", "backbone": "minilm", "seed": seed,
        "adapter": {"method": method, "factorization": factorization, "ranks": ranks,
                    "scaling": 2.0, "dropout": 0.1, **adapter},
        "optim": {"lr": 5e-3, **(optim or {})},
        "train": {"max_steps": STEPS, "batch_size": 4, "max_length": 16, "log_every": 1,
                  "eval_every": 25, "max_train_samples": 4 * STEPS,
                  "max_eval_samples": EVAL_SAMPLES},
    })


SPECS = [_spec(m, f, r, o, seed=i) for i, (m, f, r, o) in enumerate(MIX)]


@pytest.fixture(autouse=True)
def _one_thread():
    # One thread: on a shared 2-core machine two OpenMP threads spin at every barrier when the
    # other core is busy (measured 10x slower under load), and the numbers compared are the same.
    with torch_threads(1):
        yield


def _losses(points):
    return [p["value"] for p in sorted(points, key=lambda p: p["step"])
            if p["name"] == "train/loss"]


@pytest.fixture(scope="module")
def solo():
    """Each spec of SPECS trained alone: (per-step losses, result)."""
    runs = []
    with torch_threads(1):
        for spec in SPECS:
            points = []
            result = run_training(spec, points.extend)
            runs.append((_losses(points), result))
    return runs


def _assert_matches_solo(points, metrics, solo_run):
    solo_losses, solo_result = solo_run
    losses = _losses(points)
    assert len(losses) == len(solo_losses) == STEPS
    for step, (packed, alone) in enumerate(zip(losses, solo_losses, strict=True), start=1):
        assert packed == pytest.approx(alone, rel=1e-4), f"step {step}"
    assert abs(metrics["accuracy"] - solo_result["accuracy"]) * EVAL_SAMPLES <= 1 + 1e-9
    assert metrics["steps"] == STEPS


def test_a_packed_model_adds_each_jobs_update_to_its_own_rows_only():
    configs = [AdapterConfig("lora", ranks=2),
               AdapterConfig("att_qkv", factorization="cp", ranks=2),
               AdapterConfig("qkv_depth", ranks=2, projections=("q", "k", "v", "o"))]
    solos = [apply_adapter(tiny_bert(), c, train_head=True).eval() for c in configs]
    pack = build_pack(tiny_bert(), configs, [1, 2, 3], device=torch.device("cpu")).eval()
    for j, model in enumerate(solos):
        # non-zero updates, so every job's rows really change
        randomise([p for p in model.parameters() if p.requires_grad], seed=j, std=0.3)
        pack.job(j).adapter.load_state_dict(get_adapter(model).state_dict())
        pack.job(j).classifier.load_state_dict(model.classifier.state_dict())
    ids = torch.cat([token_batch(seed) for seed in range(3)])[:, :7]
    mask = torch.ones_like(ids)
    mask[1, 4:] = mask[4, 2:] = 0  # padding is per row
    with torch.no_grad():
        packed = pack([0, 1, 2], 2, input_ids=ids, attention_mask=mask)
        for j, model in enumerate(solos):
            rows = slice(2 * j, 2 * j + 2)
            alone = model(input_ids=ids[rows], attention_mask=mask[rows]).logits
            torch.testing.assert_close(packed[rows], alone, rtol=1e-5, atol=1e-5)
        # The same rows under another pack order and a subset of jobs: the same numbers.
        swapped = pack([2, 0], 2, input_ids=ids[[4, 5, 0, 1]], attention_mask=mask[[4, 5, 0, 1]])
    torch.testing.assert_close(swapped, packed[[4, 5, 0, 1]], rtol=1e-5, atol=1e-5)


def test_dropout_draws_each_jobs_rows_from_that_jobs_generator_at_its_own_length():
    configs = [AdapterConfig("lora", ranks=2, dropout=0.2),
               AdapterConfig("qkv", factorization="cp", ranks=2)]
    pack = build_pack(tiny_bert(), configs, [1, 2], device=torch.device("cpu")).train()
    ids = torch.cat([token_batch(0), token_batch(1)])  # 4 rows of 9 tokens
    mask = torch.ones_like(ids)
    mask[:2, 5:] = 0  # job 0's sentences are 5 tokens long: padded to 9 only in the pack

    def forward(jobs, rows, length, lengths):
        for job in jobs:
            pack.job(job).generator.manual_seed(100 + job)
        with torch.no_grad():
            return pack(jobs, 2, lengths, input_ids=ids[rows, :length],
                        attention_mask=mask[rows, :length])

    both = forward([0, 1], slice(0, 4), 9, [5, 9])
    torch.testing.assert_close(both[:2], forward([0], slice(0, 2), 5, [5]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[2:], forward([1], slice(2, 4), 9, [9]), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the generators moved on: other masks, other outputs
        assert not torch.allclose(pack([0, 1], 2, [5, 9], input_ids=ids, attention_mask=mask),
                                  both)


def test_run_pack_refuses_specs_of_different_pack_keys_and_a_sink_count_that_differs():
    a = SPECS[0]
    longer = a.model_copy(update={"train": a.train.model_copy(update={"max_length": 32})})
    assert pack_key(a) == pack_key(SPECS[1]) != pack_key(longer)
    with pytest.raises(ValueError, match="max_length"):
        run_pack([a, longer], [None, None])
    with pytest.raises(ValueError, match="one sink per spec"):
        run_pack([a, SPECS[1]], [None])


def test_a_pack_gives_every_method_and_factorization_its_solo_numbers(solo):
    points = [[] for _ in SPECS]
    results = run_pack(SPECS, [p.extend for p in points])
    for result, job_points, solo_run in zip(results, points, solo, strict=True):
        assert result.status == "succeeded", result.error
        _assert_matches_solo(job_points, result.metrics, solo_run)
        assert result.metrics["trainable_params"] == solo_run[1]["trainable_params"]
    # Each job streams its own metrics: per-mode gradient norms of its own modes.
    names = {p["name"] for p in points[6]}
    assert {"grad_norm/QKV", "grad_norm/Layers", "grad_norm/Core", "eff_rank/Layers"} <= names
    assert not any(name.endswith(("/Heads", "/HeadDim")) for name in names)


def test_a_diverging_job_leaves_the_pack_and_the_others_keep_their_solo_numbers(solo):
    diverging = _spec("qkv", "cp", 2, {"lr": 1e30, "warmup_ratio": 0.0}, seed=11)
    points = [[], [], []]
    results = run_pack([SPECS[0], diverging, SPECS[3]], [p.extend for p in points])
    assert results[1].status == "failed"
    assert "not finite" in results[1].error
    assert results[1].metrics["steps"] < 5
    assert max(p["step"] for p in points[1]) == results[1].metrics["steps"] - 1
    for index, job in ((0, 0), (2, 3)):
        assert results[index].status == "succeeded"
        _assert_matches_solo(points[index], results[index].metrics, solo[job])


def test_a_cancelled_job_leaves_the_pack_and_the_others_keep_their_solo_numbers(solo):
    steps = []
    cancel = JobSink(progress=lambda step, total, loss: steps.append(step),
                     should_stop=lambda: len(steps) >= 10)
    points = [[], []]
    results = run_pack([SPECS[2], SPECS[5], SPECS[7]],
                       [points[0].extend, cancel, points[1].extend])
    assert results[1].status == "cancelled"
    assert results[1].metrics["steps"] == 10 and steps == list(range(1, 11))
    for index, job, own in ((0, 2, points[0]), (2, 7, points[1])):
        assert results[index].status == "succeeded"
        _assert_matches_solo(own, results[index].metrics, solo[job])


def test_a_failing_sink_ends_its_job_only_and_run_training_raises_it():
    spec = SPECS[0]
    short = spec.model_copy(update={"train": spec.train.model_copy(update={"max_steps": 3})})

    def broken(points):
        raise OSError("disk full")

    results = run_pack([short, short], [broken, None])
    assert results[0].status == "failed" and "disk full" in results[0].error
    assert results[1].status == "succeeded" and results[1].metrics["steps"] == 3
    with pytest.raises(OSError, match="disk full"):
        run_training(short, broken)
    diverging = short.model_copy(update={"optim": short.optim.model_copy(
        update={"lr": 1e30, "warmup_ratio": 0.0})})
    with pytest.raises(TrainingFailed, match="not finite"):
        run_training(diverging)
    assert math.isfinite(results[1].metrics["accuracy"])
