"""`tenslora train` rejects bad specs with exit 2 and a message naming the problem."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _train(spec_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "train", str(spec_path), *extra],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: nope\nbackbone: minilm\n", "task must be one of"),
        ("backbone: minilm\n", "task: Field required"),
        ("task: rotten_tomatoes\nbackbone: minilm\nadapter: {method: qkv_depth, ranks: [1, 2]}\n",
         "ranks for method 'qkv_depth' must have 4 entries"),
        ("task: mnist5k\nbackbone: minilm\n", "reads text but task 'mnist5k' is image"),
        ("task: rotten_tomatoes\nbackbone: minilm\ntrain: {batch_size: 0}\n",
         "train.batch_size"),
        ("kind: synthetic\n", "specs of kind 'train'"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("task: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_specs_exit_2_with_a_clear_message(tmp_path, text, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    done = _train(spec)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""


def test_a_missing_spec_file_exits_2(tmp_path):
    done = _train(tmp_path / "absent.yaml")
    assert done.returncode == 2 and "cannot read spec" in done.stderr


def test_a_run_whose_loss_becomes_non_finite_exits_1_naming_the_step(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "task: synthetic_text\nbackbone: minilm\nadapter: {method: lora, ranks: 2}\n"
        "optim: {lr: 1.0e+30, warmup_ratio: 0.0}\n"
        "train: {max_steps: 6, batch_size: 4, max_length: 16, max_eval_samples: 8}\n"
    )
    done = _train(spec)
    assert done.returncode == 1, done.stderr
    assert "training loss is not finite" in done.stderr and "at step" in done.stderr
