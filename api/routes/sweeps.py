from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import AnyToken, ReadSessionDep, SessionDep, SettingsDep, SubmitterToken
from api.errors import error_responses
from protocol.models import MAX_PAGE, GroupPath, ResultsOut, SweepCreate, SweepList, SweepOut
from scheduler import results, sweeps

router = APIRouter(
    prefix="/api/v1/sweeps", tags=["sweeps"], responses=error_responses(401, 422, 503)
)
NO_SUCH_SWEEP = error_responses(404, s404="no such sweep")
SweepId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "",
    status_code=201,
    responses=error_responses(
        403, 413, 422, s403="not a submitter or admin token",
        s422="an invalid sweep (the detail names the field); nothing was stored",
    ),
)
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
        limits=settings.limits,
    )
    return sweeps.sweep_out(view)


@router.get("")
def list_sweeps(
    session: ReadSessionDep,
    _token: AnyToken,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> SweepList:
    views, total = sweeps.list_sweeps(session, limit, offset)
    return SweepList(items=[sweeps.sweep_out(view) for view in views], total=total)


@router.get("/{sweep_id:int}", responses=NO_SUCH_SWEEP)
def get_sweep(sweep_id: SweepId, session: ReadSessionDep, _token: AnyToken) -> SweepOut:
    return sweeps.sweep_out(sweeps.get_sweep(session, sweep_id))


@router.post(
    "/{sweep_id:int}/cancel",
    responses=error_responses(
        403, 404, s403="not a submitter or admin token, or another token's sweep",
        s404="no such sweep",
    ),
)
def cancel_sweep(sweep_id: SweepId, session: SessionDep, token: SubmitterToken) -> SweepOut:
    """Cancel queued jobs now and running ones at their next heartbeat (a submitter: only its
    own sweeps; an admin: any)."""
    return sweeps.sweep_out(sweeps.cancel_sweep(session, sweep_id, by=token))


@router.get(
    "/{sweep_id:int}/results",
    responses=error_responses(
        404, 422, s404="no such sweep",
        s422="an unknown group_by path, or a compare_to that names no row",
    ),
)
def sweep_results(
    sweep_id: SweepId,
    session: ReadSessionDep,
    _token: AnyToken,
    group_by: Annotated[
        list[GroupPath] | None,
        Query(description="paths of the job spec to group by, the parameter repeated for "
              "several: group_by=tag&group_by=adapter.method"),
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
