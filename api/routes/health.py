from __future__ import annotations

from fastapi import APIRouter

from api.routing import GuardedRoute

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness, without auth."""
    return {"status": "ok"}
