from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import AnyToken, ReadSessionDep, SessionDep, SettingsDep, SubmitterToken
from protocol.models import ResultsOut, SweepCreate, SweepList, SweepOut
from scheduler import results, sweeps

router = APIRouter(prefix="/api/v1/sweeps", tags=["sweeps"])
SweepId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def sweep_out(view: sweeps.SweepView) -> SweepOut:
    return SweepOut(
        id=view.sweep.id,
        name=view.sweep.name,
        priority=view.sweep.priority,
        n_jobs=view.sweep.n_jobs,
        status=view.status.value,
        counts=view.counts,
        created_at=view.sweep.created_at,
        cancelled_at=view.sweep.cancelled_at,
    )


@router.post("", status_code=201, responses={422: {"description": "invalid sweep"}})
def create_sweep(
    body: SweepCreate, session: SessionDep, settings: SettingsDep, token: SubmitterToken
) -> SweepOut:
    """Expand a sweep into jobs and queue them; nothing is stored when any job is invalid."""
    view = sweeps.create_sweep(
        session,
        name=body.name,
        base=body.base,
        configs=body.configs,
        grid=body.grid,
        priority=body.priority,
        max_jobs=settings.max_sweep_jobs,
        owner_token_id=token.id,
    )
    return sweep_out(view)


@router.get("")
def list_sweeps(
    session: ReadSessionDep,
    _token: AnyToken,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> SweepList:
    views, total = sweeps.list_sweeps(session, limit, offset)
    return SweepList(items=[sweep_out(view) for view in views], total=total)


@router.get("/{sweep_id}", responses={404: {"description": "no such sweep"}})
def get_sweep(sweep_id: SweepId, session: ReadSessionDep, _token: AnyToken) -> SweepOut:
    return sweep_out(sweeps.get_sweep(session, sweep_id))


@router.post(
    "/{sweep_id}/cancel",
    responses={
        403: {"description": "a submitter cancelling another token's sweep"},
        404: {"description": "no such sweep"},
    },
)
def cancel_sweep(sweep_id: SweepId, session: SessionDep, token: SubmitterToken) -> SweepOut:
    """Cancel queued jobs now and running ones at their next heartbeat (a submitter: only its
    own sweeps; an admin: any)."""
    return sweep_out(sweeps.cancel_sweep(session, sweep_id, by=token))


@router.get(
    "/{sweep_id}/results",
    responses={
        404: {"description": "no such sweep"},
        422: {"description": "a malformed group_by, or a compare_to that names no row"},
    },
)
def sweep_results(
    sweep_id: SweepId,
    session: ReadSessionDep,
    _token: AnyToken,
    group_by: Annotated[
        list[str] | None,
        Query(description="dotted config paths, repeated or comma-separated, e.g. adapter.method"),
    ] = None,
    compare_to: Annotated[
        list[str] | None,
        Query(
            description="the baseline row, FIELD:VALUE of group_by fields, comma-separated, "
            "e.g. tag:lora; adds delta and p_value (Welch's t-test) to the other rows"
        ),
    ] = None,
) -> ResultsOut:
    """Mean, sample std, min and max of every numeric result over succeeded jobs, by group."""
    return ResultsOut.model_validate(
        results.results_answer(session, sweep_id, group_by or [], compare_to or [])
    )
