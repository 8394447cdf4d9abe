"""Probes for orchestrators: liveness (the process answers) and readiness (it can serve)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import DatabaseDep
from api.errors import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness, without auth: the process answers. It never touches the database, so an
    outage there does not get a healthy server restarted."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503, s503="the database does not answer"))
def readyz(database: DatabaseDep) -> dict[str, str]:
    """Readiness, without auth: the database answers a query (503 when it does not)."""
    database.ping()
    return {"status": "ready"}
