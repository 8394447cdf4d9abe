"""The job spec: validation, canonical hashing, and staying torch-free."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tenslora.core.job_spec import SyntheticSpec, TrainSpec, parse_spec, spec_hash


def _train(**over):
    data = {"kind": "train", "task": "cola", "backbone": "roberta-base"}
    data.update(over)
    return data


def test_train_spec_fills_every_default():
    spec = parse_spec(_train())
    assert isinstance(spec, TrainSpec)
    assert spec.seed == 0 and spec.adapter.method == "lora" and spec.train.log_every == 20


def test_synthetic_spec_is_selected_by_kind():
    spec = parse_spec({"kind": "synthetic", "duration_s": 0.5, "outcome": {"accuracy": 0.9}})
    assert isinstance(spec, SyntheticSpec) and spec.outcome == {"accuracy": 0.9}


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"adapter": {"method": "qkv_depth", "ranks": [8, 8, 3]}}, "4 entries"),
        ({"adapter": {"method": "nope"}}, "method must be one of"),
        ({"task": "imagenet"}, "task must be one of"),
        ({"backbone": "vit-base-in21k"}, "reads image"),
        ({"optim": {"lr": 1e-3, "min_lr": 1e-2}}, "min_lr"),
        ({"optim": {"mode_lr_multipliers": {"Bogus": 2.0}}}, "mode_lr_multipliers"),
        ({"epochs": 3}, "Extra inputs"),
        ({"regime": "isorank"}, "needs a tensor method"),
        ({"regime": "lora", "adapter": {"method": "qkv"}}, "needs adapter.method lora"),
        ({"regime": "isoparams"}, "regime"),
    ],
)
def test_bad_specs_fail_with_a_message_that_says_what(over, needle):
    with pytest.raises(ValidationError, match=needle):
        parse_spec(_train(**over))


def test_regime_is_optional_and_kept():
    assert parse_spec(_train()).regime is None
    spec = parse_spec(_train(regime="isoparameters", adapter={"method": "qkv", "ranks": 4}))
    assert spec.regime == "isoparameters" and spec.model_dump()["regime"] == "isoparameters"


def test_equal_runs_hash_equally_whatever_the_spelling():
    a = parse_spec(_train(adapter={"method": "qkv", "ranks": [4, 4, 4]}))
    b = parse_spec(_train(adapter={"ranks": 4, "method": "qkv"}))
    c = parse_spec(_train(adapter={"method": "qkv", "ranks": 4}, seed=1))
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)


def test_torch_free_modules_do_not_import_torch():
    code = (
        "import sys, tenslora, tenslora.core, tenslora.sweeps, tenslora.core.methods, "
        "tenslora.core.adapter_config, tenslora.core.job_spec, tenslora.core.regimes, "
        "tenslora.core.catalog, tenslora.core.allocation, tenslora.core.archive, "
        "tenslora.sweeps.presets; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_paths_follow_models_and_dataclasses_alike() -> None:
    from tenslora.core.job_spec import spec_paths

    paths = spec_paths()
    assert {"tag", "seed", "adapter", "adapter.method", "adapter.ranks", "optim.lr",
            "optim.core_lr_multiplier", "train.batch_size", "outcome", "memory_mb"} <= set(paths)
    assert len(paths) == len(set(paths))
