"""How fast sweeps progress: first start, last finish and finished count, aggregated in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from protocol.vocabulary import TERMINAL
from scheduler.models import Job

FINISHED: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL))


@dataclass(frozen=True)
class SweepTiming:
    first_started_at: datetime | None
    last_finished_at: datetime | None
    n_finished: int


def sweep_timings(session: Session, sweep_ids: Sequence[int]) -> dict[int, SweepTiming]:
    """Per sweep: when its first job started, when its last one finished, how many finished.

    Jobs cancelled before they started count as finished without a start (they still advance
    the sweep). One grouped query for a whole page of sweeps.
    """
    if not sweep_ids:
        return {}
    finished = func.sum(case((Job.status.in_(FINISHED), 1), else_=0))
    rows = session.execute(
        select(
            Job.sweep_id,
            # min/max keep the column's type, so SQLite's text comes back as aware datetimes.
            func.min(Job.started_at),
            func.max(Job.finished_at),
            finished,
        )
        .where(Job.sweep_id.in_(list(sweep_ids)))
        .group_by(Job.sweep_id)
    )
    return {
        sweep_id: SweepTiming(first, last, int(n or 0)) for sweep_id, first, last, n in rows
    }
