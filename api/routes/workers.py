from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AnyToken, ReadSessionDep, SettingsDep
from api.errors import error_responses
from api.routing import GuardedRoute
from protocol.models import WorkerList, WorkerOut
from scheduler import queries

router = APIRouter(
    prefix="/api/v1/workers", tags=["workers"], responses=error_responses(401, 422, 503),
    route_class=GuardedRoute,
)


@router.get("")
def list_workers(
    session: ReadSessionDep,
    settings: SettingsDep,
    _token: AnyToken,
    seen_within_s: Annotated[float | None, Query(gt=0, le=10**9)] = None,
) -> WorkerList:
    """Workers that claimed or heartbeat recently, with how many jobs each runs."""
    window = seen_within_s if seen_within_s is not None else settings.worker_seen_seconds
    views = queries.list_workers(session, window)
    return WorkerList(items=[WorkerOut.model_validate(view) for view in views])
