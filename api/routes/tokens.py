from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminToken, SessionDep
from protocol.models import TokenCreate, TokenCreated
from scheduler import tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=201)
def create_token(body: TokenCreate, session: SessionDep, _token: AdminToken) -> TokenCreated:
    """Mint a token (admin only); the response is the only place the token appears."""
    raw = tokens.create_token(session, body.role, body.name)
    return TokenCreated(token=raw, role=body.role, name=body.name)
