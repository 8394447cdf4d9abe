"""A sweep's results read only that sweep's rows, through indexes (both databases): EXPLAIN of
every statement ``aggregate_results`` runs on result values, with a long history of other sweeps
in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, text

from scheduler.db import Database
from scheduler.models import JOBS, RESULT_VALUES, Sweep
from scheduler.results import aggregate_results

HISTORY_JOBS, SWEEP_JOBS, VALUES_PER_JOB = 5000, 20, 4


def _store(database: Database) -> None:
    """An old sweep of HISTORY_JOBS succeeded jobs and the new one of SWEEP_JOBS, with results."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    with database.session() as session:
        for sweep_id in (1, 2):
            session.add(Sweep(id=sweep_id, name=f"s{sweep_id}", priority=0, definition={},
                              n_jobs=1, created_at=when))
        session.flush()
        total = HISTORY_JOBS + SWEEP_JOBS
        session.execute(insert(JOBS), [
            {"id": n, "sweep_id": 2 if n <= SWEEP_JOBS else 1, "spec_hash": f"{n:064d}",
             "kind": "synthetic", "config": {"kind": "synthetic", "tag": str(n % 3)},
             "priority": 0, "status": "succeeded", "attempt": 1, "memory_estimate_mb": 1,
             "created_at": when}
            for n in range(1, total + 1)])
        session.execute(insert(RESULT_VALUES), [
            {"job_id": n, "name": f"m{k}", "value": 0.5}
            for n in range(1, total + 1) for k in range(VALUES_PER_JOB)])
        if database.dialect == "postgresql":
            session.execute(text("ANALYZE"))


def _plans(database: Database) -> list[str]:
    """The plan of each statement on result_values that a results query runs."""
    seen: list[tuple[str, Any]] = []
    with database.session(write=False) as session:
        connection = session.connection()

        def grab(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "result_values" in statement:
                seen.append((statement, parameters))

        event.listen(connection, "before_cursor_execute", grab)
        rows = aggregate_results(session, 2, ["tag"])
        event.remove(connection, "before_cursor_execute", grab)
        assert sum(row.n for row in rows) == SWEEP_JOBS
        explain = "EXPLAIN QUERY PLAN " if database.dialect == "sqlite" else "EXPLAIN "
        return ["\n".join(" ".join(map(str, row)) for row in
                          connection.exec_driver_sql(explain + statement, parameters))
                for statement, parameters in seen]


def test_a_sweeps_results_read_its_rows_through_indexes(database: Database) -> None:
    _store(database)
    plans = _plans(database)
    assert plans
    for plan in plans:
        if database.dialect == "sqlite":
            assert "SEARCH jobs USING INDEX ix_jobs_sweep_status (sweep_id=? AND status=?)" in plan
            assert "SEARCH result_values USING" in plan and "SCAN result_values" not in plan
        else:
            assert "ix_jobs_sweep_status" in plan, plan
            assert "Seq Scan on result_values" not in plan and "pk_result_values" in plan, plan
