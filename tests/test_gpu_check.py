"""scripts/gpu-check: its arguments, its report files, and its cheapest sections on the CPU.

The GPU sections run where a GPU is lent (never in CI); these keep the plumbing alive: the report
is rewritten after every change and survives a failing section, the sweeps it submits are valid,
and the CPU rehearsal records NVML as skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.processes import REPO
from scheduler.expand import expand_sweep
from tenslora.core.job_spec import TrainSpec
from tenslora.core.methods import METHODS, TENSOR_METHODS
from tools.gpu_check import __main__ as gpu_check
from tools.gpu_check import packbench, service, training
from tools.gpu_check.profile import CPU, GPU
from tools.gpu_check.report import JSON_NAME, MARKDOWN_NAME, Report, Section, Skipped


def _read(out: Path) -> dict:
    return json.loads((out / JSON_NAME).read_text())


def test_report_records_a_failing_section_and_runs_the_next(tmp_path: Path) -> None:
    report = Report(tmp_path, {"profile": "test"})
    with report.section("x", "fails") as section:
        section.fact("before", 1.5)
        raise RuntimeError("boom")
    with report.section("y", "skips"):
        raise Skipped("no GPU")
    with report.section("z", "works") as section:
        section.row("runs", {"loss": float("nan"), "name": "a|b"})
    sections = _read(tmp_path)["sections"]
    assert [sections[k]["status"] for k in "xyz"] == ["failed", "skipped", "ok"]
    assert sections["x"]["error"] == "RuntimeError: boom"
    assert sections["x"]["facts"] == {"before": 1.5}
    assert sections["z"]["tables"]["runs"] == [{"loss": "nan", "name": "a|b"}]
    markdown = (tmp_path / MARKDOWN_NAME).read_text()
    assert "**failed**" in markdown and "RuntimeError: boom" in markdown
    assert "| nan | a\\|b |" in markdown


def test_report_is_on_disk_while_a_section_still_runs(tmp_path: Path) -> None:
    report = Report(tmp_path, {})
    with report.section("a", "long") as section:
        section.row("runs", {"method": "lora"})
        on_disk = _read(tmp_path)["sections"]["a"]
        assert on_disk["status"] == "running"
        assert on_disk["tables"]["runs"] == [{"method": "lora"}]


@pytest.mark.parametrize("argv", [["--sections", "az"], ["--sections", ""],
                                  ["--budget-s", "0"]])
def test_bad_arguments_exit_2(tmp_path: Path, argv: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main([str(tmp_path), *argv]) == 2
    assert "gpu-check: error:" in capsys.readouterr().err
    assert not (tmp_path / JSON_NAME).exists()


def test_gpu_profile_trains_lora_once_and_every_construction_with_both_factorizations() -> None:
    runs = training.method_runs(GPU)
    assert len(runs) == 1 + 2 * len(TENSOR_METHODS) == 15
    assert {m for m, _ in runs} == set(METHODS)
    for method, factorization in runs:
        spec = TrainSpec.model_validate(training.train_spec(method, factorization, GPU))
        assert spec.train.precision == "bf16" and spec.train.max_steps == 30


@pytest.mark.parametrize("profile", [GPU, CPU], ids=["gpu", "cpu"])
def test_the_check_sweeps_are_valid_and_span_two_pack_keys(profile) -> None:
    train = service.train_sweep(profile)
    jobs = expand_sweep(train["base"], train["configs"], train["grid"], max_jobs=1000)
    specs = [job.spec for job in jobs if isinstance(job.spec, TrainSpec)]
    assert len(specs) == len(jobs) == sum(profile.sweep_configs) * profile.sweep_seeds
    assert len({spec.train.batch_size for spec in specs}) == 2
    assert len({spec.adapter.factorization for spec in specs}) == 2
    synthetic = service.synthetic_sweep(profile)
    assert len(expand_sweep(synthetic["base"], None, synthetic["grid"], 1000)) == (
        profile.synthetic_jobs)


def test_cpu_rehearsal_records_nvml_skipped_and_no_sweep_to_compare(tmp_path: Path) -> None:
    done = subprocess.run([str(REPO / "scripts" / "gpu-check"), str(tmp_path), "--cpu",
                           "--sections", "be"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    sections = _read(tmp_path)["sections"]
    assert sections["env"]["status"] == "ok"
    assert sections["env"]["facts"]["torch"]
    assert sections["b"]["status"] == "skipped" and "no GPU" in sections["b"]["error"]
    assert sections["e"]["status"] == "skipped"
    assert "section b: skipped" in done.stdout


def test_pack_figures_give_the_k8_ratio_and_whether_memory_per_job_falls() -> None:
    report_section = Section("d", "pack scaling")
    packbench.record(report_section, [
        {"k": 1, "a": 100.0, "b": 100.0, "c": 100.0, "peak_mb_per_job_packed": 900.0},
        {"k": 8, "a": 100.0, "b": 130.0, "c": 520.0, "peak_mb_per_job_packed": 300.0},
        {"k": 16, "a": 100.0, "c": 700.0, "peak_mb_per_job_packed": 310.0},
    ])
    assert report_section.facts["pack(k=8) / sequential"] == 5.2
    assert report_section.facts["pack(k=8) / k processes"] == 4.0
    assert report_section.facts["peak memory per job falls as k grows"] is False
    assert report_section.tables["per k"][2]["c/b"] is None


def test_estimates_are_compared_per_job_alone_and_per_pack() -> None:
    from scheduler.memory import pack_memory_mb

    config = training.train_spec("lora", "tucker", GPU)
    base, share = pack_memory_mb(TrainSpec.model_validate(config), {})

    def job(job_id: int, pack_id: str | None, estimate: int, peak: float) -> dict:
        return {"id": job_id, "kind": "train", "config": config, "pack_id": pack_id,
                "memory_estimate_mb": estimate, "result": {"peak_memory_mb": peak}}

    section = Section("e", "estimates")
    service.compare_estimates(section, {"jobs": [
        job(1, None, 1000, 1200.0), job(2, "p1", 1000, 1500.0), job(3, "p1", 1000, 1500.0),
        {"id": 4, "kind": "synthetic", "config": {}, "memory_estimate_mb": 500, "result": {}},
    ]})
    assert section.tables["jobs alone"] == [{
        "id": 1, "kind": "train", "adapter": "lora/tucker", "estimate_mb": 1000,
        "peak_mb": 1200.0, "peak/estimate": 1.2, "under-estimated": True}]
    [pack] = section.tables["packs"]
    assert pack["jobs"] == 2 and pack["sum_of_job_estimates_mb"] == 2000
    assert pack["formula_pack_mb"] == base + 2 * share
    assert section.facts["compared (jobs alone + packs)"] == 2
