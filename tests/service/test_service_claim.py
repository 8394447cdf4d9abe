"""The claim function itself, racing on each backend, without HTTP in between."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from protocol.vocabulary import JobStatus
from scheduler import sweeps
from scheduler.db import Database
from scheduler.errors import Conflict
from scheduler.migrate import upgrade
from scheduler.queue import claim_job, complete_job, reap_expired, release_job
from scheduler.states import TRANSITIONS, sources


def test_two_claimers_racing_for_one_job_get_it_exactly_once(database_url: str) -> None:
    upgrade(database_url)
    database = Database(database_url)
    try:
        with database.session() as session:
            sweeps.create_sweep(session, "one", {"kind": "synthetic", "duration_s": 0})
        start = threading.Barrier(8)
        winners: list[int] = []

        def race(index: int) -> None:
            start.wait(timeout=30)
            with database.session() as session:
                claim = claim_job(session, f"w{index}", None, 1000, 60, 3)
                if claim is not None:
                    winners.append(claim.job.id)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(winners) == 1
    finally:
        database.dispose()


def test_release_puts_the_job_back_with_the_same_attempt(database_url: str) -> None:
    upgrade(database_url)
    database = Database(database_url)
    try:
        with database.session() as session:
            sweeps.create_sweep(session, "one", {"kind": "synthetic", "duration_s": 0})
        with database.session() as session:
            claim = claim_job(session, "w", None, 1000, 60, 3)
            assert claim is not None
        with database.session() as session:
            job = release_job(session, claim.job.id, claim.lease_id)
        assert job.status == "queued" and job.attempt == 1 and job.lease_id is None
    finally:
        database.dispose()


def test_every_state_change_comes_from_the_transition_table() -> None:
    assert sources(JobStatus.running) == ("queued",)
    assert set(sources(JobStatus.cancelled)) == {"queued", "running"}
    assert all(frm not in (JobStatus.succeeded, JobStatus.failed) for frm, _ in TRANSITIONS)


def test_a_result_on_an_expired_lease_is_refused_and_the_job_runs_again(
    database_url: str,
) -> None:
    """An expired lease is not live: its complete is a 409, even before anyone reclaims the job."""
    upgrade(database_url)
    database = Database(database_url)
    start = datetime.now(UTC)
    try:
        with database.session() as session:
            sweeps.create_sweep(session, "one", {"kind": "synthetic", "duration_s": 0})
        with database.session() as session:
            first = claim_job(session, "cut-off", None, 1000, 10, 3, now=start)
        assert first is not None
        later = start + timedelta(seconds=30)
        with database.session() as session, pytest.raises(Conflict, match="expired"):
            complete_job(session, first.job.id, first.lease_id, {"accuracy": 0.7}, later)
        with database.session() as session:
            assert reap_expired(session, 3, later) == 1
        with database.session() as session, pytest.raises(Conflict):
            complete_job(session, first.job.id, first.lease_id, {"accuracy": 0.7}, later)
        with database.session() as session:
            again = claim_job(session, "other", None, 1000, 10, 3, now=later)
        assert again is not None and again.job.id == first.job.id and again.job.attempt == 2
        with database.session() as session:
            done = complete_job(session, again.job.id, again.lease_id, {"accuracy": 0.8}, later)
        assert done.result == {"accuracy": 0.8} and done.attempt == 2
    finally:
        database.dispose()
