"""`tenslora sweep preset`: the command writes, validates and submits preset sweep files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from launch.processes import REPO, project_env
from scheduler.db import Database
from scheduler.metrics import MetricPoint, add_metrics
from scheduler.migrate import upgrade
from scheduler.queue import claim_job, complete_job
from scheduler.sweeps import create_sweep, list_sweeps
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.job_spec import parse_spec
from tenslora.core.regimes import predict_parameters
from tenslora.sweeps.presets import expand_jobs


def _preset(*args, database_url=None, timeout=120):
    extra = {"TENSLORA_DATABASE_URL": database_url} if database_url else {}
    return subprocess.run(
        [sys.executable, "-m", "cli", "sweep", "preset", *args],
        env=project_env(**extra), cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def test_paper_table2_on_cola_writes_a_valid_sweep_file(tmp_path):
    out = tmp_path / "table2.yaml"
    done = _preset("paper-table2", "--task", "cola", "--out", str(out))
    assert done.returncode == 0, done.stderr
    sweep = yaml.safe_load(out.read_text())
    assert set(sweep) <= {"name", "base", "configs", "grid", "priority"}
    jobs = [parse_spec(job) for job in expand_jobs(sweep)]
    assert len(jobs) == 100
    lora = next(job for job in jobs if job.tag == "lora")
    assert predict_parameters(lora.adapter, 768, 12, 12) == 221_184
    assert "221,184" in done.stderr, "the summary table shows every row's parameter count"


def test_stdout_holds_only_the_sweep_file_and_json_is_written_for_json(tmp_path):
    done = _preset("core-lr", "--task", "mrpc", "--seeds", "2")
    assert done.returncode == 0, done.stderr
    assert len(expand_jobs(yaml.safe_load(done.stdout))) == 8
    out = tmp_path / "core.json"
    assert _preset("core-lr", "--seeds", "1", "--out", str(out)).returncode == 0
    assert json.loads(out.read_text())["grid"] == {"seed": [0]}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["paper-table3"], "preset must be one of"),
        (["paper-table2", "--task", "imagenet"], "task must be one of"),
        (["paper-table2", "--set", "train.batch_size=0"], "do not validate"),
        (["paper-table2", "--set", "nonsense"], "dotted.path=value"),
        (["allocate"], "--from-sweep"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, needle):
    done = _preset(*args)
    assert done.returncode == 2 and needle in done.stderr, done.stderr


def test_submit_stores_the_preset_in_the_local_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'local.db'}"
    done = _preset("paper-table2", "--task", "cola", "--seeds", "2", "--set",
                   "train.max_steps=10", "--submit", database_url=url)
    assert done.returncode == 0, done.stderr
    database = Database(url)
    with database.session(write=False) as session:
        views, total = list_sweeps(session)
    database.dispose()
    assert total == 1 and views[0].sweep.name == "paper-table2-cola-roberta-base"
    assert views[0].sweep.n_jobs == 40


# Hand-made spectra of a finished qkv_depth run: Input redundant (one direction carries the
# energy), the other modes spread out: the allocator should shrink Input and grow the rest.
SPECTRA = {
    "Input": {"svd_entropy_norm": 0.1, "top1_energy": 0.97, "eff_rank": 1.1},
    "Output": {"svd_entropy_norm": 0.95, "top1_energy": 0.3, "eff_rank": 3.6},
    "QKV": {"svd_entropy_norm": 0.9, "top1_energy": 0.4, "eff_rank": 2.6},
    "Layers": {"svd_entropy_norm": 0.92, "top1_energy": 0.35, "eff_rank": 3.5},
}
ADAPTER = {"method": "qkv_depth", "ranks": [4, 4, 3, 4]}


@pytest.fixture
def finished_sweep(tmp_path):
    """A sweep in a real database whose qkv_depth runs streamed spectra and succeeded."""
    url = f"sqlite:///{tmp_path / 'finished.db'}"
    upgrade(url)
    database = Database(url)
    base = {"kind": "train", "task": "cola", "backbone": "roberta-base", "tag": "qkv_depth"}
    with database.session() as session:
        view = create_sweep(session, "finished", base,
                            configs=[{"adapter": ADAPTER}, {"tag": "lora", "adapter": {}}],
                            grid={"seed": [0, 1]})
    for _ in range(4):
        with database.session() as session:
            claim = claim_job(session, "w", "cpu", 10**9, 60.0, 3)
            points = [MetricPoint(step, f"{metric}/{mode}", value * (step / 10))
                      for mode, stats in SPECTRA.items() for metric, value in stats.items()
                      for step in (5, 10)]
            add_metrics(session, claim.job.id, claim.lease_id, points)
            complete_job(session, claim.job.id, claim.lease_id, {"accuracy": 0.8})
    database.dispose()
    return url, view.sweep.id


def test_allocate_suggests_ranks_from_a_finished_sweep_at_the_same_budget(
    finished_sweep, tmp_path
):
    from tenslora.core.allocation import allocate_ranks

    url, sweep_id = finished_sweep
    out = tmp_path / "allocated.yaml"
    done = _preset("allocate", "--from-sweep", str(sweep_id), "--seeds", "3", "--out", str(out),
                   database_url=url)
    assert done.returncode == 0, done.stderr
    sweep = yaml.safe_load(out.read_text())
    jobs = [parse_spec(job) for job in expand_jobs(sweep)]
    assert len(jobs) == 3 and {job.tag for job in jobs} == {"qkv_depth-allocated"}
    budget = predict_parameters(AdapterConfig("qkv_depth", ranks=[4, 4, 3, 4]), 768, 12, 12)
    spectra = {mode: {"rank": rank, "singular_values": [], "entropy_norm": s["svd_entropy_norm"],
                      "top1_energy": s["top1_energy"], "effective_rank": s["eff_rank"]}
               for (mode, s), rank in zip(SPECTRA.items(), [4, 4, 3, 4], strict=True)}
    expected = allocate_ranks(spectra, "qkv_depth", budget, 768, 12, 12)
    allocated = jobs[0].adapter
    assert allocated.mode_ranks() == expected
    assert expected["Input"] < 4, "the redundant mode shrank"
    assert predict_parameters(allocated, 768, 12, 12) <= budget


def test_allocate_from_an_unknown_sweep_exits_2(tmp_path):
    done = _preset("allocate", "--from-sweep", "999",
                   database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    assert done.returncode == 2 and "999" in done.stderr


def test_allocate_thresholds_decide_what_is_redundant_and_only_changed_drops_kept_rows(
    finished_sweep, tmp_path
):
    url, sweep_id = finished_sweep
    # At the default threshold (0.9) Input (top-1 energy 0.97) is redundant: the row changes.
    out = tmp_path / "changed.yaml"
    done = _preset("allocate", "--from-sweep", str(sweep_id), "--seeds", "1", "--only-changed",
                   "--out", str(out), database_url=url)
    assert done.returncode == 0, done.stderr
    [job] = [parse_spec(job) for job in expand_jobs(yaml.safe_load(out.read_text()))]
    assert job.adapter.mode_ranks()["Input"] < 4
    # Above every mode's top-1 energy nothing is redundant, and at its own budget nothing grows.
    kept = tmp_path / "kept.yaml"
    done = _preset("allocate", "--from-sweep", str(sweep_id), "--seeds", "1",
                   "--shrink-top1", "0.99", "--out", str(kept), database_url=url)
    assert done.returncode == 0, done.stderr
    [job] = [parse_spec(job) for job in expand_jobs(yaml.safe_load(kept.read_text()))]
    assert job.adapter.mode_ranks() == {"Input": 4, "Output": 4, "QKV": 3, "Layers": 4}
    done = _preset("allocate", "--from-sweep", str(sweep_id), "--shrink-top1", "0.99",
                   "--only-changed", database_url=url)
    assert done.returncode == 2 and "kept the ranks of every adapter" in done.stderr
    done = _preset("allocate", "--from-sweep", str(sweep_id), "--shrink-top1", "1.5",
                   database_url=url)
    assert done.returncode == 2 and "--shrink-top1" in done.stderr
