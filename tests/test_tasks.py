"""The task registry: offline data, deterministic splits, majority baselines, `tenslora tasks`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tenslora.core.catalog import BACKBONES, TASKS
from tenslora.training.tasks import load_task, majority_baseline
from tenslora.training.tasks.base import Split, split_train_validation

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = [name for name, info in TASKS.items() if info.offline]


def test_the_paper_tasks_and_backbones_stay_registered():
    assert {"cola", "mrpc", "sst2", "eurosat", "dtd"} <= set(TASKS)
    assert {"roberta-base", "bert-base-uncased", "vit-base-in21k", "minilm"} <= set(BACKBONES)


def test_every_registry_entry_names_a_loader_that_exists():
    from tenslora.core.catalog import load_reference

    for info in TASKS.values():
        assert (info.hub is None) != (info.loader is None), info.name
        assert info.hub is not None or callable(load_reference(info.loader))
        assert info.offline or info.hub is not None  # hub tasks are the ones that need a hub
    for backbone in BACKBONES.values():
        assert backbone.loader is not None or backbone.hub_id, backbone.name
        if backbone.loader is not None:
            assert callable(load_reference(backbone.loader))


def test_a_task_entry_must_say_where_its_data_comes_from():
    from tenslora.core.catalog import HubSource, TaskInfo

    with pytest.raises(ValueError, match="exactly one of hub and loader"):
        TaskInfo("nowhere", "text", 2, True, False, "nothing")
    with pytest.raises(ValueError, match="exactly one of hub and loader"):
        TaskInfo("both", "text", 2, True, False, "x", hub=HubSource("a", None), loader="m:f")


def test_offline_covers_a_real_text_and_a_real_image_task():
    real = [TASKS[name] for name in OFFLINE if not TASKS[name].synthetic]
    assert {"text", "image"} <= {info.modality for info in real}
    assert [n for n in TASKS if TASKS[n].synthetic] == ["synthetic_text"]


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_tasks_load_with_consistent_labels(name):
    task = load_task(name)
    assert len(task.train) > len(task.validation) > 100
    for split in (task.train, task.validation):
        assert split.labels.min() >= 0 and split.labels.max() < TASKS[name].num_labels
    assert 0.0 < task.majority_baseline() < 1.0


def test_splits_are_deterministic_disjoint_and_stratified():
    first, second = load_task("rotten_tomatoes"), load_task("rotten_tomatoes")
    assert first.validation.inputs == second.validation.inputs
    assert not set(first.train.inputs) & set(first.validation.inputs)
    assert abs(first.train.labels.mean() - first.validation.labels.mean()) < 0.01


def test_split_keeps_every_example_once():
    inputs = [f"x{i}" for i in range(100)]
    labels = np.array([0] * 70 + [1] * 30)
    train, validation = split_train_validation(inputs, labels, 0.2)
    assert sorted(train.inputs + validation.inputs) == sorted(inputs)
    assert len(validation) == 20 and validation.labels.sum() == 6


def test_subsample_is_seeded_and_bounded():
    split = Split([str(i) for i in range(50)], np.arange(50) % 2)
    assert split.subsample(10, seed=1).inputs == split.subsample(10, seed=1).inputs
    assert split.subsample(10, seed=1).inputs != split.subsample(10, seed=2).inputs
    assert split.subsample(None) is split and len(split.subsample(500)) == 50


def test_majority_baseline_is_the_share_of_the_most_frequent_class():
    assert majority_baseline(np.array([0, 1, 1, 1, 2])) == pytest.approx(0.6)


def test_mnist_images_are_grayscale_arrays_in_unit_range():
    image = load_task("mnist5k").train.inputs[0]
    assert image.shape == (28, 28) and image.min() >= 0.0 and image.max() <= 1.0


def test_tasks_command_lists_every_task_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "cli", "tasks", "--json"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=True,
    ).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == set(TASKS)
    for row in rows.values():
        assert {"name", "modality", "num_labels", "offline", "synthetic",
                "majority_baseline"} <= set(row)
    assert rows["rotten_tomatoes"]["majority_baseline"] == pytest.approx(
        load_task("rotten_tomatoes").majority_baseline())
    assert rows["cola"]["offline"] is False and rows["cola"]["majority_baseline"] is None
