"""Sweep presets: the paper's Table 2 and the TensLoRA+ core learning-rate study, as sweep files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.job_spec import TrainSpec, parse_spec, spec_hash
from tenslora.core.methods import TENSOR_METHODS
from tenslora.core.regimes import isoparameters, isorank, predict_parameters
from tenslora.sweeps.presets import (
    CORE_LR_MULTIPLIERS,
    adapter_parameters,
    core_lr,
    expand_jobs,
    paper_table2,
    set_base_value,
)

# The paper's "# Params" column at RoBERTa-base size (d=768, L=12, 12 heads), LoRA rank 4.
PAPER_ISORANK_PARAMS = {
    "lora": 221_184,
    "att-isorank": 123_840,
    "qkv-isorank": 74_640,
    "depth-isorank": 18_768,
    "att_qkv-isorank": 43_728,
    "att_depth-isorank": 11_040,
    "qkv_depth-isorank": 6_460,
    "att_qkv_depth-isorank": 4_460,
}
RELATED = ("fact", "lotr-qkv_depth", "lotr-depth", "lorta", "cara")


@pytest.fixture(scope="module")
def cola_jobs() -> list[TrainSpec]:
    return [parse_spec(job) for job in expand_jobs(paper_table2("cola"))]


def _by_tag(jobs: list[TrainSpec]) -> dict[str, TrainSpec]:
    return {job.tag: job for job in jobs if job.seed == 0}


def _params(job: TrainSpec) -> int:
    return predict_parameters(job.adapter, 768, 12, 12)


def test_table2_on_cola_is_every_row_times_five_seeds_on_roberta(cola_jobs):
    rows = _by_tag(cola_jobs)
    assert len(rows) == 1 + 2 * len(TENSOR_METHODS) + len(RELATED)
    assert len(cola_jobs) == 5 * len(rows)
    assert {job.seed for job in cola_jobs} == {0, 1, 2, 3, 4}
    assert {(job.task, job.backbone) for job in cola_jobs} == {("cola", "roberta-base")}


def test_every_table2_row_states_its_regime_in_the_spec(cola_jobs):
    regimes = {tag: job.regime for tag, job in _by_tag(cola_jobs).items()}
    assert regimes["lora"] == "lora"
    assert {regimes[f"{m}-isorank"] for m in TENSOR_METHODS} == {"isorank"}
    assert {regimes[f"{m}-isoparams"] for m in TENSOR_METHODS} == {"isoparameters"}
    assert {regimes[tag] for tag in RELATED} == {"related"}


def test_every_job_is_a_distinct_valid_spec(cola_jobs):
    assert len({spec_hash(job) for job in cola_jobs}) == len(cola_jobs)


@pytest.mark.parametrize(("tag", "expected"), list(PAPER_ISORANK_PARAMS.items()))
def test_lora_and_isorank_rows_have_the_papers_parameter_counts(cola_jobs, tag, expected):
    job = _by_tag(cola_jobs)[tag]
    assert _params(job) == expected
    if tag != "lora":
        assert job.adapter.rank_tuple() == isorank(job.adapter.method, 4)


@pytest.mark.parametrize("method", TENSOR_METHODS)
def test_isoparameters_rows_take_the_library_ranks_and_match_loras_budget(cola_jobs, method):
    job = _by_tag(cola_jobs)[f"{method}-isoparams"]
    assert job.adapter.rank_tuple() == isoparameters(method, 4, 768, 12, 12)
    assert _params(job) == pytest.approx(221_184, rel=0.07)


def test_related_methods_sit_where_table1_places_them(cola_jobs):
    rows = _by_tag(cola_jobs)
    assert rows["fact"].adapter.method == "qkv_depth"
    assert rows["lotr-qkv_depth"].adapter.method == "qkv_depth"
    assert rows["lotr-depth"].adapter.method == "depth"
    assert {rows[t].adapter.method for t in ("lorta", "cara")} == {"att_qkv_depth"}
    assert rows["lorta"].adapter.factorization == rows["cara"].adapter.factorization == "cp"
    assert rows["lorta"].adapter.projections == ("q", "k", "v", "o")
    assert rows["cara"].adapter.projections == ("q", "k", "v")
    assert rows["lotr-depth"].adapter.projections == ("q", "v")


@pytest.mark.parametrize("tag", ["lotr-qkv_depth", "lotr-depth", "lorta", "cara"])
def test_budget_matched_related_methods_land_within_one_percent_of_lora(cola_jobs, tag):
    assert _params(_by_tag(cola_jobs)[tag]) == pytest.approx(221_184, rel=0.01)


def test_jobs_use_the_papers_optimiser_schedule(cola_jobs):
    optim = cola_jobs[0].optim
    assert optim.lr == 5e-4 and optim.warmup_ratio > 0 and optim.min_lr <= optim.lr
    assert cola_jobs[0].train.epochs == 10


def test_image_tasks_default_to_the_vit_backbone():
    sweep = paper_table2("eurosat", seeds=1)
    assert sweep["base"]["backbone"] == "vit-base-in21k"
    assert all(parse_spec(job).task == "eurosat" for job in expand_jobs(sweep))


def test_offline_backbone_gets_its_own_budget():
    sweep = paper_table2("cola", backbone="minilm", seeds=1)
    lora = AdapterConfig("lora", ranks=4)
    budget = predict_parameters(lora, 384, 6, 12)
    assert adapter_parameters(sweep["configs"][0]["adapter"], "minilm") == budget
    lorta = next(c for c in sweep["configs"] if c["tag"] == "lorta")
    assert adapter_parameters(lorta["adapter"], "minilm") == pytest.approx(budget, rel=0.01)


def test_core_lr_sweeps_the_tenslora_plus_multipliers():
    jobs = [parse_spec(job) for job in expand_jobs(core_lr("mrpc", seeds=3))]
    assert sorted({job.optim.core_lr_multiplier for job in jobs}) == [1.0, 4.0, 8.0, 16.0]
    assert len(jobs) == len(CORE_LR_MULTIPLIERS) * 3
    assert {job.adapter.method for job in jobs} == {"att_qkv_depth"}
    assert len({job.tag for job in jobs}) == len(CORE_LR_MULTIPLIERS)


def test_set_writes_a_dotted_path_into_every_job():
    sweep = paper_table2("cola", seeds=1)
    set_base_value(sweep, "train.max_steps=50")
    set_base_value(sweep, "optim.lr=1e-3")
    jobs = [parse_spec(job) for job in expand_jobs(sweep)]
    assert {job.train.max_steps for job in jobs} == {50}
    assert {job.optim.lr for job in jobs} == {1e-3}


@pytest.mark.parametrize("bad", ["no-equals-sign", "=5", "task.x=1"])
def test_set_rejects_malformed_assignments(bad):
    with pytest.raises(ValueError, match="--set"):
        set_base_value(paper_table2("cola", seeds=1), bad)


def test_zero_seeds_is_refused():
    with pytest.raises(ValueError, match="seeds"):
        paper_table2("cola", seeds=0)


def test_presets_stay_torch_free():
    code = "import tenslora.sweeps.presets, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
