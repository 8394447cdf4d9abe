"""Claiming one named job: how a Ray Tune trial takes the job it was made for (both databases)."""

from __future__ import annotations

from scheduler.db import Database
from scheduler.models import Job
from scheduler.queue import claim_job
from scheduler.sweeps import create_sweep

SYNTHETIC = {"kind": "synthetic", "duration_s": 0.0, "memory_mb": 10}


def _job_ids(database: Database) -> list[int]:
    with database.session() as session:
        create_sweep(session, "tune", SYNTHETIC, grid={"seed": [0, 1, 2]})
    with database.session(write=False) as session:
        return sorted(job.id for job in session.query(Job).all())


def _claim(database: Database, job_id: int | None, free_mb: int = 1000):
    with database.session() as session:
        claim = claim_job(session, "tune-trial", "cpu", free_mb, 60.0, 3, job_id=job_id)
        return claim.job.id if claim else None


def test_a_named_claim_takes_that_job_even_when_older_jobs_wait(database):
    first, _second, third = _job_ids(database)
    assert _claim(database, third) == third
    assert _claim(database, None) == first, "the ordinary claim still takes the oldest"


def test_a_named_claim_of_a_job_already_running_gets_nothing(database):
    first, *_ = _job_ids(database)
    assert _claim(database, first) == first
    assert _claim(database, first) is None


def test_a_named_claim_still_respects_memory(database):
    first, *_ = _job_ids(database)
    assert _claim(database, first, free_mb=5) is None
    assert _claim(database, first, free_mb=10) == first
