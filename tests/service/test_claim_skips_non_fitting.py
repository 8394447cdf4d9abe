"""A claim's cost does not grow with the queued jobs that do not fit (both databases).

The work is counted, not timed: SQLite's virtual-machine steps (its progress handler), Postgres'
rows and index entries read in the transaction (``pg_stat_xact_*``). Walking the claim order
through 4,000 jobs that do not fit (what the claim did) costs about 40 times what 100 cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import JOBS
from scheduler.packs import claim_pack
from scheduler.queue import claim_job
from scheduler.sweeps import create_sweep

BIG = {"kind": "synthetic", "duration_s": 0.0, "memory_mb": 10**6}
SMALL = {"kind": "synthetic", "duration_s": 0.0, "memory_mb": 10}
FREE_MB = 1000


def _queue(database: Database, non_fitting: int) -> None:
    """``non_fitting`` high-priority jobs no claim fits, then two small ones behind them."""
    with database.session() as session:
        sweep = create_sweep(session, "big", BIG, priority=5)
        model = session.execute(
            select(JOBS).where(JOBS.c.sweep_id == sweep.sweep.id)).mappings().one()
        copy = {k: v for k, v in model.items() if k != "id"}
        session.execute(insert(JOBS), [{**copy, "spec_hash": f"{n:064d}"}
                                       for n in range(1, non_fitting)])
        create_sweep(session, "small", SMALL, grid={"seed": [0, 1]})


def _work(session: Session) -> Callable[[], int]:
    """A counter of the database work done in ``session`` from now on."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        raw: Any = session.connection().connection.driver_connection
        raw.set_progress_handler(count, 100)
        return lambda: steps[0]
    read = text("SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'jobs'")

    def total() -> int:
        return int(session.scalar(read) or 0)

    start = total()
    return lambda: total() - start


def _claim_cost(database: Database, pack: bool) -> tuple[int, int]:
    """The work of a claim that finds a fitting job, and of one that finds none."""
    with database.session() as session:
        work = _work(session)
        if pack:
            packed = claim_pack(session, "w", "cpu", FREE_MB, 4, 60.0, 3, reap=False)
            claimed = packed.claims[0].job if packed else None
        else:
            single = claim_job(session, "w", "cpu", FREE_MB, 60.0, 3, reap=False)
            claimed = single.job if single else None
        assert claimed is not None and claimed.memory_estimate_mb <= FREE_MB
        cost = work()
        assert claim_job(session, "w", "cpu", 5, 60.0, 3, reap=False) is None
        return cost, work() - cost


def test_a_claim_skips_jobs_that_do_not_fit_through_the_index(database: Database) -> None:
    costs = []
    for non_fitting, pack in ((100, False), (3900, False), (4000, True)):
        _queue(database, non_fitting)  # adds to the jobs still queued
        costs.append(_claim_cost(database, pack))
    (claim_few, none_few), (claim_many, none_many), (pack_many, _) = costs
    assert claim_many < 2 * claim_few + 50, costs
    assert none_many < 2 * none_few + 50, costs
    assert pack_many < 4 * claim_few + 50, costs
