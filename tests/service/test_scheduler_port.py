"""One contract for both ``SchedulerPort``s: the API's client over HTTP (a real server process)
and ``LocalScheduler`` in this process, each on SQLite and on Postgres.

Every test runs against each backend and asserts the same answers and the same errors (type and
status code), as Optuna runs one suite over all its storages. A feature that reads the scheduler
adds its method to the port and a test here. (That both classes implement every method of the
port, mypy checks: they subclass it, and ``open_scheduler`` instantiates each as one.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from cli.local_scheduler import LocalScheduler
from cli.scheduler_port import open_scheduler
from protocol.client import ApiClient
from protocol.errors import ApiRejected
from protocol.models import MAX_PAGE
from protocol.port import SchedulerPort
from protocol.vocabulary import JobStatus, SweepStatus
from tests.helpers.server import sqlite_url, start_service

SYNTHETIC = {"kind": "synthetic", "duration_s": 0.0, "memory_mb": 10}
UNKNOWN_ID = 987_654


@dataclass
class Backend:
    port: SchedulerPort
    database_url: str  # the same database, to play the worker's part


@pytest.fixture(
    scope="module",
    params=["http", "local", pytest.param("http-postgres", marks=pytest.mark.postgres),
            pytest.param("local-postgres", marks=pytest.mark.postgres)],
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    kind, _, store = request.param.partition("-")
    folder = tmp_path_factory.mktemp(f"port-{request.param}")
    url = (request.getfixturevalue("postgres").fresh_database() if store == "postgres"
           else sqlite_url(folder))
    if kind == "local":
        with open_scheduler(None, None, database_url=url) as port:
            assert isinstance(port, LocalScheduler)
            yield Backend(port, url)
        return
    service = start_service(folder, url)
    try:
        with open_scheduler(service.url, service.tokens["admin"]) as port:
            assert isinstance(port, ApiClient)
            yield Backend(port, url)
    finally:
        service.stop()


def submit(port: SchedulerPort, name: str, **sweep: Any) -> int:
    return port.submit_sweep({"name": name, "base": SYNTHETIC, **sweep}).id


def finish(backend: Backend, job_id: int, result: dict[str, Any],
           points: Sequence[tuple[int, str, float]] = ()) -> None:
    """What a worker does: claim the job, stream ``points``, report ``result``."""
    from scheduler.db import Database
    from scheduler.metrics import MetricPoint, add_metrics
    from scheduler.queue import claim_job, complete_job

    database = Database(backend.database_url)
    try:
        with database.session() as session:
            claim = claim_job(session, "contract-worker", "cpu", 10**6, 60.0, 3, job_id=job_id)
            assert claim is not None
            add_metrics(session, job_id, claim.lease_id, [MetricPoint(*p) for p in points])
            complete_job(session, job_id, claim.lease_id, result)
    finally:
        database.dispose()


def rejected(call: Any) -> ApiRejected:
    with pytest.raises(ApiRejected) as caught:
        call()
    assert type(caught.value) is ApiRejected, "a 4xx other than 409 is plain ApiRejected"
    return caught.value


def test_submit_list_show_and_cancel(backend: Backend) -> None:
    port = backend.port
    created = port.submit_sweep({"name": "grid", "base": SYNTHETIC, "grid": {"seed": [0, 1, 2]}})
    assert (created.name, created.n_jobs, created.status) == ("grid", 3, SweepStatus.queued)
    assert created.counts[JobStatus.queued] == 3
    listed = port.list_sweeps(limit=MAX_PAGE)
    assert listed.items[0].id == created.id and listed.total == len(listed.items), "newest first"
    shown = port.get_sweep(created.id)
    assert shown == listed.items[0]
    assert (shown.name, shown.created_at, shown.status) == ("grid", created.created_at,
                                                           SweepStatus.queued)
    assert shown.counts == {**dict.fromkeys(JobStatus, 0), JobStatus.queued: 3}
    cancelled = port.cancel_sweep(created.id)
    assert cancelled.status == SweepStatus.cancelled and cancelled.cancelled_at is not None
    assert cancelled.counts[JobStatus.cancelled] == 3 and cancelled.counts[JobStatus.queued] == 0
    assert port.cancel_sweep(created.id).counts == cancelled.counts, "cancelling twice is a no-op"
    assert {job.status for job in port.jobs(created.id)} == {JobStatus.cancelled}


def test_results_compare_to_a_baseline_row(backend: Backend) -> None:
    port = backend.port
    scores = {"base": [0.70, 0.72, 0.74], "better": [0.80, 0.83, 0.81]}
    configs = [{"tag": tag, "seed": seed} for tag, values in scores.items()
               for seed in range(len(values))]
    sweep_id = submit(port, "compare", configs=configs)
    for job in port.jobs(sweep_id):
        finish(backend, job.id, {"accuracy": scores[job.config["tag"]][job.config["seed"]]})
    answer = port.sweep_results(sweep_id, ["tag"], ["tag:base"])
    assert answer.group_by == ["tag"] and answer.compare_to == {"tag": "base"}
    rows = {row.group["tag"]: row for row in answer.rows}
    assert rows["base"].baseline and not rows["better"].baseline
    better = rows["better"].metrics["accuracy"]
    assert better.n == 3 and better.mean == pytest.approx(sum(scores["better"]) / 3)
    assert better.delta == pytest.approx((sum(scores["better"]) - sum(scores["base"])) / 3)
    assert better.p_value is not None and 0 < better.p_value < 0.05
    assert rows["base"].metrics["accuracy"].delta is None
    plain = port.sweep_results(sweep_id, ["tag,seed"])
    assert plain.group_by == ["tag", "seed"] and len(plain.rows) == 6 and plain.compare_to is None
    assert port.get_sweep(sweep_id).counts[JobStatus.succeeded] == 6


def test_jobs_page_past_a_thousand(backend: Backend) -> None:
    port = backend.port
    sweep_id = submit(port, "big", grid={"seed": list(range(MAX_PAGE + 5))})
    first = port.job_page(sweep_id, limit=MAX_PAGE)
    assert len(first.items) == MAX_PAGE and first.total == MAX_PAGE + 5
    rest = port.job_page(sweep_id, JobStatus.queued, offset=MAX_PAGE)
    assert [job.config["seed"] for job in rest.items] == list(range(MAX_PAGE, MAX_PAGE + 5))
    every = list(port.iter_jobs(sweep_id))
    assert [job.id for job in every] == sorted({job.id for job in every})
    assert len(every) == MAX_PAGE + 5 and every[:MAX_PAGE] == first.items
    assert port.job_page(sweep_id, JobStatus.succeeded).total == 0
    assert rejected(lambda: port.job_page(sweep_id, limit=MAX_PAGE + 1)).status_code == 422
    port.cancel_sweep(sweep_id)


def test_job_metrics_workers_and_no_adapter(backend: Backend) -> None:
    port = backend.port
    sweep_id = submit(port, "curves")
    [job] = port.jobs(sweep_id)
    finish(backend, job.id, {"accuracy": 0.5},
           [(2, "train/loss", 0.4), (1, "train/loss", 0.9), (1, "eval/accuracy", 0.5)])
    done = port.get_job(job.id)
    assert done.status == JobStatus.succeeded and done.result == {"accuracy": 0.5}
    points = [(p.step, p.name, p.value) for p in port.job_metrics(job.id).points]
    assert points == [(1, "eval/accuracy", 0.5), (1, "train/loss", 0.9), (2, "train/loss", 0.4)]
    assert "contract-worker" in {w.worker_id for w in port.workers(seen_within_s=3600).items}
    missing = rejected(lambda: port.download_adapter(job.id))
    assert missing.status_code == 404 and "adapter" in missing.detail


@pytest.mark.parametrize(
    ("call", "status", "words"),
    [
        (lambda port: port.get_sweep(UNKNOWN_ID), 404, f"sweep {UNKNOWN_ID} does not exist"),
        (lambda port: port.cancel_sweep(UNKNOWN_ID), 404, f"sweep {UNKNOWN_ID} does not exist"),
        (lambda port: port.sweep_results(UNKNOWN_ID, ["tag"]), 404,
         f"sweep {UNKNOWN_ID} does not exist"),
        (lambda port: port.get_job(UNKNOWN_ID), 404, f"job {UNKNOWN_ID} does not exist"),
        (lambda port: port.job_metrics(UNKNOWN_ID), 404, f"job {UNKNOWN_ID} does not exist"),
        (lambda port: port.download_adapter(UNKNOWN_ID), 404, f"job {UNKNOWN_ID}"),
        (lambda port: port.submit_sweep({"name": "no base"}), 422, "base"),
        (lambda port: port.submit_sweep({"name": "x", "base": {**SYNTHETIC, "memory_mb": -1}}),
         422, "memory_mb"),
        (lambda port: port.submit_sweep({"name": "x", "base": {"kind": "train",
                                                              "adapter": {"method": "nope"}}}),
         422, "nope"),
    ],
    ids=["unknown-sweep", "cancel-unknown-sweep", "results-unknown-sweep", "unknown-job",
         "metrics-unknown-job", "adapter-unknown-job", "sweep-without-base",
         "sweep-invalid-job", "sweep-unknown-method"],
)
def test_the_same_errors_from_both(backend: Backend, call: Any, status: int, words: str) -> None:
    refused = rejected(lambda: call(backend.port))
    assert refused.status_code == status and words in refused.detail, refused.detail


def test_a_baseline_outside_group_by_or_matching_no_row_is_422(backend: Backend) -> None:
    port = backend.port
    sweep_id = submit(port, "one row", configs=[{"tag": "only"}])
    outside = rejected(lambda: port.sweep_results(sweep_id, ["tag"], ["seed:0"]))
    assert outside.status_code == 422 and "is not one of group_by" in outside.detail
    no_row = rejected(lambda: port.sweep_results(sweep_id, ["tag"], ["tag:missing"]))
    assert no_row.status_code == 422 and "matches no row" in no_row.detail
    port.cancel_sweep(sweep_id)


def test_learned_estimates_list_and_reset(backend: Backend) -> None:
    from scheduler.memory import formula_memory_mb, shape_key
    from tenslora.core.job_spec import TrainSpec, parse_spec

    port = backend.port
    train = {"kind": "train", "task": "cola", "backbone": "minilm", "train": {"batch_size": 29}}
    sweep_id = port.submit_sweep({"name": "peaks", "base": train, "grid": {"seed": [0, 1]}}).id
    first, second = port.jobs(sweep_id)
    spec = parse_spec(first.config)
    assert isinstance(spec, TrainSpec)
    shape, formula = shape_key(spec), formula_memory_mb(spec)
    finish(backend, first.id, {"peak_memory_mb": 1500})
    [learned] = [item for item in port.estimates().items if item.shape == shape]
    assert (learned.peak_memory_mb, learned.pack_share_mb, learned.formula_mb,
            learned.queued_jobs) == (1500, None, formula, 1)
    assert port.get_job(second.id).memory_estimate_mb == 1500
    reset = port.reset_estimate(shape)
    assert (reset.shape, reset.peak_memory_mb, reset.formula_mb, reset.queued_jobs) == (
        shape, None, formula, 1)
    assert port.get_job(second.id).memory_estimate_mb == formula
    assert shape not in {item.shape for item in port.estimates().items}
    again = rejected(lambda: port.reset_estimate(shape))
    assert again.status_code == 404 and f"no learned estimate for shape {shape!r}" in again.detail
    port.cancel_sweep(sweep_id)
