"""How the worker supervises a pack of jobs (``worker.pack.RunningPack``) and carries each job's
report (``protocol.report.JobReport``) through the spool to the client.

Real child processes run synthetic jobs; the API is a recording stand-in for ``ApiClient``, so
heartbeats can say "cancelled" at will and every report the client would send is kept.
"""

from __future__ import annotations

import json
import threading
import time
import typing
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from launch.processes import wait_for
from protocol.client import Lease
from protocol.models import ClaimResponse
from protocol.report import JobReport
from protocol.vocabulary import TERMINAL, Outcome
from tenslora.core.finite import finite_json
from worker.pack import RunningPack
from worker.spool import Spool

LEASE_S = 1.2  # a heartbeat every 0.4 s


class RecordingApi:
    """Stands in for ``ApiClient``: answers heartbeats, keeps what a worker sends."""

    def __init__(self, cancelled: Iterable[int] = ()) -> None:
        self.cancelled = set(cancelled)
        self.reports: list[tuple[JobReport, bytes | None]] = []
        self.released: list[int] = []
        self.points: dict[int, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def heartbeat(self, lease: Lease, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(cancelled=lease.job_id in self.cancelled)

    def post_metrics(self, job_id: int, _lease_id: str, points: list[Any], **_: Any) -> None:
        with self._lock:
            self.points.setdefault(job_id, []).extend(points)

    def send_report(self, report: JobReport, adapter: bytes | None = None, **_: Any) -> None:
        with self._lock:
            self.reports.append((report, adapter))

    def release(self, job_id: int, _lease_id: str) -> None:
        self.released.append(job_id)

    def reported(self) -> dict[int, JobReport]:
        return {report.job_id: report for report, _ in self.reports}


def lease(job_id: int, spec: dict[str, Any]) -> Lease:
    now = datetime.now(UTC)
    job = {"id": job_id, "sweep_id": 1, "status": "running", "attempt": 1, "kind": "synthetic",
           "config": spec, "spec_hash": "h", "priority": 0, "memory_estimate_mb": 10,
           "device": "cpu", "worker_id": "w", "created_at": now, "started_at": now,
           "finished_at": None, "lease_expires_at": None, "result": None, "error": None}
    expires = now + timedelta(seconds=LEASE_S)
    return Lease(ClaimResponse.model_validate(
        {"job": job, "lease_id": f"lease-{job_id}", "lease_expires_at": expires}
    ))


def synthetic(duration_s: float, **fields: Any) -> dict[str, Any]:
    return {"kind": "synthetic", "duration_s": duration_s, **fields}


def run_pack(tmp_path: Path, api: RecordingApi, specs: list[dict[str, Any]],
             pack_id: str | None = None) -> RunningPack:
    leases = [lease(100 + index, spec) for index, spec in enumerate(specs)]
    pack = RunningPack(leases, 10, api, Spool(tmp_path / "spool"), tmp_path / "logs",  # type: ignore[arg-type]
                       threading.Event(), pack_id=pack_id)
    pack.start("cpu")
    return pack


def finished(pack: RunningPack, timeout: float = 20) -> RunningPack:
    return wait_for("the pack to end", lambda: pack.done and pack, timeout)


@pytest.mark.parametrize("size", [1, 2])
def test_a_pack_of_one_and_a_pack_of_two_report_through_the_same_path(
    tmp_path: Path, size: int
) -> None:
    api = RecordingApi()
    specs = [synthetic(0.2, outcome={"accuracy": 0.5 + index / 10}) for index in range(size)]
    pack = finished(run_pack(tmp_path, api, specs, pack_id="p" if size > 1 else None))
    assert [slot.outcome for slot in pack.slots] == [Outcome.succeeded] * size
    assert all(slot.stored for slot in pack.slots)
    assert api.reported() == {
        100 + index: JobReport(100 + index, f"lease-{100 + index}", 1, Outcome.succeeded,
                               result={"accuracy": 0.5 + index / 10})
        for index in range(size)
    }
    assert not Spool(tmp_path / "spool").pending()  # sent, so no longer spooled


def test_a_cancelled_job_is_reported_cancelled_while_its_packmate_succeeds(tmp_path: Path) -> None:
    api = RecordingApi(cancelled={101})
    started = time.monotonic()
    pack = finished(run_pack(tmp_path, api, [synthetic(1.5, outcome={"f1": 0.25}),
                                             synthetic(120)], pack_id="p"))
    assert time.monotonic() - started < 15  # the cancelled job did not sleep its 120 s
    assert [slot.outcome for slot in pack.slots] == [Outcome.succeeded, Outcome.cancelled]
    assert list(api.reported()) == [100]  # the API already knows job 101 was cancelled
    assert api.reported()[100].result == {"f1": 0.25}


def test_a_cancelled_pack_of_one_is_killed_at_the_heartbeat(tmp_path: Path) -> None:
    api = RecordingApi(cancelled={100})
    started = time.monotonic()
    pack = finished(run_pack(tmp_path, api, [synthetic(120)]))
    assert time.monotonic() - started < 10
    assert [slot.outcome for slot in pack.slots] == [Outcome.cancelled]
    assert api.reports == []


def test_a_failing_job_is_reported_failed_with_its_error(tmp_path: Path) -> None:
    api = RecordingApi()
    pack = finished(run_pack(tmp_path, api, [synthetic(0, fail=True)]))
    [report] = api.reported().values()
    assert report.outcome is Outcome.failed and "failed on purpose" in report.error
    assert pack.slots[0].outcome is Outcome.failed


def test_a_drained_pack_gives_back_the_leases_of_the_jobs_it_had_not_ended(
    tmp_path: Path,
) -> None:
    api = RecordingApi()
    pack = run_pack(tmp_path, api, [synthetic(0.1, outcome={"a": 1.0}), synthetic(120)],
                    pack_id="p")
    wait_for("the first job's report", lambda: api.reports, 15)
    pack.stop(Outcome.released)
    finished(pack)
    assert [slot.outcome for slot in pack.slots] == [Outcome.succeeded, Outcome.released]
    assert api.released == [101] and list(api.reported()) == [100]


def test_a_pack_stopped_with_a_failure_has_reported_it_when_stop_returns(tmp_path: Path) -> None:
    api = RecordingApi()
    pack = run_pack(tmp_path, api, [synthetic(120)])
    wait_for("the child to run", lambda: pack.timings()[0]["claim_to_start_s"] is not None, 15)
    pack.stop(Outcome.failed, "stopped early by Ray Tune's scheduler")
    # At once: a stopped Ray Tune trial's actor may be gone a moment later.
    [report] = api.reported().values()
    finished(pack)
    assert (report.outcome, report.error) == (Outcome.failed,
                                              "stopped early by Ray Tune's scheduler")


def test_a_report_round_trips_through_the_spool_to_the_client(tmp_path: Path) -> None:
    spool, api = Spool(tmp_path), RecordingApi()
    report = JobReport(7, "lease/7", 2, Outcome.succeeded, result={"mcc": 0.5},
                       points=({"step": 1, "name": "train/loss", "value": 0.7},))
    path = spool.put(report, adapter=b"zip bytes")
    assert spool.send(api, path)  # type: ignore[arg-type]
    assert api.reports == [(report, b"zip bytes")]
    assert not path.exists() and not path.with_suffix(".adapter.zip").exists()


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"outcome": "complete", "result": {"accuracy": 1.0}},
         JobReport(3, "abc", 1, Outcome.succeeded, result={"accuracy": 1.0})),
        ({"outcome": "fail", "error": "OOM"}, JobReport(3, "abc", 1, Outcome.failed, error="OOM")),
    ],
)
def test_a_report_spooled_before_the_outcome_words_still_reaches_the_client(
    tmp_path: Path, stored: dict[str, Any], expected: JobReport
) -> None:
    spool, api = Spool(tmp_path), RecordingApi()
    path = tmp_path / "job-3-abc.json"
    path.write_text(json.dumps({"job_id": 3, "lease_id": "abc", "attempt": 1, "points": [],
                                "spooled_at": 0.0, **stored}))
    assert spool.flush(api) == 1  # type: ignore[arg-type]
    assert api.reports == [(expected, None)]


@pytest.mark.parametrize("stored", ["[1, 2]", '{"job_id": 3}',
                                    '{"job_id": 3, "lease_id": "a", "attempt": 1, '
                                    '"outcome": "cancelled"}'])
def test_a_spooled_file_that_is_no_report_moves_to_rejected(tmp_path: Path, stored: str) -> None:
    spool, api = Spool(tmp_path), RecordingApi()
    (tmp_path / "job-3-a.json").write_text(stored)
    spool.flush(api)  # type: ignore[arg-type]
    assert api.reports == [] and not spool.pending()
    assert (tmp_path / "rejected" / "job-3-a.json").exists()


def test_the_outcomes_name_the_job_statuses_and_the_training_librarys_ends() -> None:
    from tenslora.training.jobs import Status

    assert {status.value for status in TERMINAL} <= {outcome.value for outcome in Outcome}
    assert set(typing.get_args(Status)) - {"running"} <= {outcome.value for outcome in Outcome}


def test_non_finite_numbers_become_null_at_every_depth() -> None:
    value = {"a": float("nan"), "b": [1.0, float("inf"), (float("-inf"), 2)], 3: {"c": 0.5}}
    assert finite_json(value) == {"a": None, "b": [1.0, None, [None, 2]], "3": {"c": 0.5}}
    json.dumps(finite_json(value), allow_nan=False)  # a valid document
