"""The scheduler's states: status sets, a sweep's status, and the one transition statement."""

from protocol.vocabulary import ACTIVE, JOB_STATUSES, TERMINAL, JobStatus, SweepStatus
from scheduler.models import JOBS
from scheduler.states import move, sweep_status


def test_status_sets_partition_every_status():
    assert set(JOB_STATUSES) == ACTIVE | TERMINAL and not ACTIVE & TERMINAL
    assert JOB_STATUSES[0] == JobStatus.queued


def test_sweep_status_from_its_counts():
    assert sweep_status(True, {"running": 2}) == SweepStatus.cancelled
    assert sweep_status(False, {"running": 1, "queued": 3}) == SweepStatus.running
    assert sweep_status(False, {"queued": 3, "succeeded": 1}) == SweepStatus.queued
    assert sweep_status(False, {"succeeded": 2, "failed": 1}) == SweepStatus.finished


def _set_and_where(statement):
    compiled = statement.compile()
    return set(compiled.params), str(compiled)


def test_move_applies_the_allowed_sources_and_the_resets_of_the_target_state():
    params, sql = _set_and_where(move(JOBS, JobStatus.queued, JOBS.c.id == 1, now=None))
    assert {"lease_id", "lease_expires_at", "worker_id", "device", "started_at"} <= params
    assert "jobs.status = " in sql
    params, _ = _set_and_where(move(JOBS, JobStatus.cancelled, now=None))
    assert {"finished_at", "lease_expires_at"} <= params and "lease_id" not in params
    compiled = move(JOBS, JobStatus.failed, now=None, error="x").compile()
    assert compiled.params["status"] == "failed" and compiled.params["error"] == "x"
    # queued and running jobs may be cancelled; only running ones requeued
    sources = move(JOBS, JobStatus.cancelled, now=None).compile().params
    assert {sources["status_1"], sources["status_2"]} == {"queued", "running"}
    sources = move(JOBS, JobStatus.queued, now=None).compile().params
    assert sources["status_1"] == "running" and "status_2" not in sources
