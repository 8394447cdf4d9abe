"""The memory estimates the scheduler learned from reported peaks: list them, forget one (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import AdminToken, ReadSessionDep, SessionDep
from api.errors import error_responses
from protocol.models import EstimateList, EstimateOut
from scheduler import memory

router = APIRouter(
    prefix="/api/v1/estimates",
    tags=["estimates"],
    responses=error_responses(401, 403, 422, 503, s403="not an admin token"),
)
# A shape key: ``backbone|batch=B|len=L|precision`` (URL-encoded in the path).
Shape = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


@router.get("")
def list_estimates(session: ReadSessionDep, _admin: AdminToken) -> EstimateList:
    """Every job shape with a learned peak or pack share, with its formula and queued jobs."""
    return EstimateList(
        items=[EstimateOut.model_validate(view) for view in memory.list_estimates(session)]
    )


@router.delete(
    "/{shape:path}",
    responses=error_responses(404, s404="nothing was learned for this shape"),
)
def reset_estimate(shape: Shape, session: SessionDep, _admin: AdminToken) -> EstimateOut:
    """Forget a shape's learned peak and pack share: its queued jobs go back to the formula's
    estimate, and the next reports teach it again."""
    return EstimateOut.model_validate(memory.reset_estimate(session, shape))
