"""Sweep expansion as a pure function: merge, grid, dedupe, and where errors point."""

from __future__ import annotations

import pytest

from scheduler.errors import InvalidInput
from scheduler.expand import expand_sweep
from tenslora.sweeps.documents import deep_merge

TRAIN = {"task": "cola", "backbone": "minilm"}


def test_configs_deep_merge_onto_base_and_grid_multiplies_them() -> None:
    base = {**TRAIN, "adapter": {"method": "qkv", "ranks": 4}, "optim": {"lr": 1e-3}}
    jobs = expand_sweep(
        base,
        [{"tag": "a"}, {"tag": "b", "adapter": {"factorization": "cp"}}],
        {"optim.lr": [1e-4, 1e-3], "seed": [0, 1, 2]},
        max_jobs=100,
    )
    assert len(jobs) == 2 * 2 * 3
    cp = [job.spec for job in jobs if job.spec.tag == "b"]
    assert all(s.adapter.method == "qkv" and s.adapter.factorization == "cp" for s in cp)
    assert {s.optim.lr for s in cp} == {1e-4, 1e-3}
    assert jobs[0].origin == "configs[0] with grid optim.lr=0.0001, seed=0"


def test_equal_specs_in_a_sweep_become_one_job() -> None:
    jobs = expand_sweep(TRAIN, [{"seed": 0}, {}, {"adapter": {"ranks": [4]}}], None, 10)
    assert len(jobs) == 1


def test_deep_merge_replaces_lists_and_leaves_base_untouched() -> None:
    base = {"adapter": {"ranks": [1, 2, 3], "method": "qkv"}}
    merged = deep_merge(base, {"adapter": {"ranks": [4, 4, 4]}})
    assert merged == {"adapter": {"ranks": [4, 4, 4], "method": "qkv"}}
    assert base["adapter"]["ranks"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("configs", "grid", "where"),
    [
        (None, {"adapter.method": ["qkv", "nope"]}, "base with grid adapter.method='nope'"),
        ([{}, {"adapter": {"method": "depth", "ranks": [2, 2]}}], None, "configs[1]"),
        (None, {"task.name": ["x"]}, "goes through 'task'"),
        (None, {"optim.lr": [float("nan")]}, "not a finite number"),
        ([], None, "configs is empty"),
    ],
)
def test_errors_say_which_config_or_grid_value_is_wrong(configs, grid, where) -> None:
    with pytest.raises(InvalidInput) as caught:
        expand_sweep(TRAIN, configs, grid, max_jobs=100)
    assert where in caught.value.detail
