"""A train job's adapter goes from the real worker to the real server and back out: it loads,
reproduces the job's outputs, crosses an API outage in the spool, and an oversized one is refused
without losing the result."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from launch.processes import wait_for
from tenslora.core.archive import extract_adapter
from tenslora.core.metric_contract import ADAPTER_ANALYSIS_FILE, ADAPTER_WEIGHTS_FILE
from tests.worker.conftest import Scheduler, Worker, job_children, launch_worker, make_scheduler

pytestmark = [pytest.mark.slow, pytest.mark.ray]

STARTUP_S = 180  # Ray, the actor, and a child that imports torch, on a busy 2-core machine
TRAIN = {
    "kind": "train", "task": "synthetic_text", "backbone": "minilm",
    "adapter": {"method": "qkv_depth", "ranks": 2},
    "train": {"max_steps": 3, "batch_size": 4, "max_length": 16, "log_every": 1,
              "max_train_samples": 32, "max_eval_samples": 16, "precision": "fp32"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scheduler, Worker]]:
    # The lease outlives the outage of the spool test, so the report still counts after it.
    scheduler = make_scheduler(tmp_path_factory.mktemp("server"), lease_seconds=30)
    worker = launch_worker(scheduler, tmp_path_factory.mktemp("worker"), "--cpu-slots", "1")
    try:
        yield scheduler, worker
    finally:
        worker.cleanup()
        scheduler.stop()


def _run(scheduler: Scheduler, name: str, **spec: Any) -> dict[str, Any]:
    sweep = scheduler.submit(name, {**TRAIN, **spec})
    [job] = wait_for(f"job of {name}", lambda: scheduler.all_finished(sweep), STARTUP_S, every=1)
    return job


def _download(scheduler: Scheduler, job_id: int) -> Any:
    with scheduler.client() as client:
        return client.get(f"/api/v1/jobs/{job_id}/adapter")


def _validation_outputs(spec: dict[str, Any], folder: Path | None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on the job's validation examples, computed here from a
    fresh backbone with the adapter in ``folder`` loaded (or none), in float32 on the CPU."""
    import tenslora
    from tenslora.core.job_spec import TrainSpec
    from tenslora.training.backbones import load_backbone
    from tenslora.training.tasks import load_task

    train_spec = TrainSpec.model_validate(spec)
    task = load_task(train_spec.task)
    validation = task.validation.subsample(train_spec.train.max_eval_samples)
    # The head's initialisation draws from the global RNG: seeded, the untrained baseline is the
    # same every run, so comparing against it cannot pass or fail by chance.
    torch.manual_seed(train_spec.seed)
    backbone = load_backbone(train_spec.backbone, task.num_labels,
                             max_length=train_spec.train.max_length)
    if folder is not None:
        tenslora.load_adapter(backbone.model, folder)
    backbone.model.eval()
    labels = torch.from_numpy(validation.labels)
    with torch.no_grad():
        logits = backbone.model(**backbone.encode(validation.inputs)).logits.float()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(-1) == labels).double().mean().item()


def test_a_train_jobs_adapter_downloads_loads_and_reproduces_its_outputs(
    cluster: tuple[Scheduler, Worker], tmp_path: Path
) -> None:
    scheduler, worker = cluster
    job = _run(scheduler, "reproduce")
    assert job["status"] == "succeeded", (job["error"], worker.log())
    response = _download(scheduler, job["id"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    folder = extract_adapter(response.content, tmp_path / "adapter")
    loss, accuracy = _validation_outputs(job["config"], folder)
    assert loss == pytest.approx(job["result"]["eval_loss"], rel=1e-4, abs=1e-6)
    assert accuracy == pytest.approx(job["result"]["accuracy"])
    untrained_loss, _ = _validation_outputs(job["config"], None)
    assert abs(untrained_loss - loss) > 1e-4, "the adapter and head changed nothing"
    # The worker analysed the adapter's modes; the service keeps the analysis for the dashboard.
    from scheduler.artifacts import get_analysis
    from scheduler.db import Database

    database = Database(scheduler.database_url)
    try:
        with database.session(write=False) as session:
            analysis = get_analysis(session, job["id"])
    finally:
        database.dispose()
    assert analysis is not None and analysis["method"] == "qkv_depth"
    assert [m for m in analysis["constructions"][0]["modes"]] == ["Input", "Output", "QKV",
                                                                  "Layers"]


def test_the_spool_carries_an_adapter_across_an_api_outage(
    cluster: tuple[Scheduler, Worker],
) -> None:
    scheduler, worker = cluster
    sweep = scheduler.submit("outage", TRAIN)
    wait_for("the job to run", lambda: any(j["status"] == "running"
                                           for j in scheduler.jobs(sweep)), STARTUP_S)
    [job] = scheduler.jobs(sweep)
    scheduler.stop()
    try:
        time.sleep(0.5)
        wait_for("the job to end while the API is down",
                 lambda: not job_children(worker.tree()), 120, every=0.5)
        spooled = wait_for("the report in the spool", lambda: worker.spooled(job["id"]), 20)
        report = json.loads(spooled[0].read_text())
        attachment = spooled[0].with_suffix(".adapter.zip")
        with zipfile.ZipFile(attachment) as archive:
            spooled_weights = archive.read(ADAPTER_WEIGHTS_FILE)
            assert ADAPTER_ANALYSIS_FILE in archive.namelist()
    finally:
        scheduler.start()
    assert report["outcome"] == "succeeded" and report["adapter_file"] == attachment.name
    [done] = wait_for("the spooled result", lambda: scheduler.all_finished(sweep), 60)
    assert done["status"] == "succeeded", done
    response = _download(scheduler, job["id"])
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.read(ADAPTER_WEIGHTS_FILE) == spooled_weights
    wait_for("the spool to empty", lambda: not worker.spooled(job["id"]), 20)
    assert not attachment.exists()


def test_an_oversized_adapter_is_refused_clearly_and_the_result_is_still_stored(
    cluster: tuple[Scheduler, Worker],
) -> None:
    scheduler, worker = cluster
    scheduler.stop()
    scheduler.env = {"TENSLORA_MAX_ADAPTER_MB": "0.001"}  # about 1 KB: no adapter fits
    scheduler.start()
    try:
        job = _run(scheduler, "oversized")
    finally:
        scheduler.stop()
        scheduler.env = {}
        scheduler.start()
    assert job["status"] == "succeeded", (job["error"], worker.log())
    assert job["result"]["accuracy"] >= 0.0 and job["result"]["steps"] == 3
    refusal = job["result"]["adapter_error"]
    assert refusal.startswith("HTTP 413") and "TENSLORA_MAX_ADAPTER_MB" in refusal
    missing = _download(scheduler, job["id"])
    assert missing.status_code == 404 and "without an adapter" in missing.json()["detail"]
    assert not worker.spooled(job["id"])
