from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import AdminToken, DatabaseDep, ReadSessionDep, SessionDep, forget_token
from api.errors import error_responses
from api.routing import GuardedRoute
from protocol.models import TokenCreate, TokenCreated, TokenList, TokenOut
from scheduler import tokens
from scheduler.errors import Conflict

router = APIRouter(
    prefix="/api/v1/tokens",
    tags=["tokens"],
    responses=error_responses(401, 403, 422, 503, s403="not an admin token"),
    route_class=GuardedRoute,
)
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("", status_code=201, responses=error_responses(413))
def create_token(body: TokenCreate, session: SessionDep, admin: AdminToken) -> TokenCreated:
    """Mint a token (admin only); the response is the only place the token appears."""
    raw = tokens.create_token(session, body.role, body.name, created_by_id=admin.id)
    created = tokens.find_token(session, raw)
    assert created is not None  # stored by the line above, in this transaction
    return TokenCreated(id=created.id, token=raw, role=body.role, name=body.name)


@router.get("")
def list_tokens(
    session: ReadSessionDep,
    _admin: AdminToken,
    include_revoked: Annotated[bool, Query(description="list revoked tokens too")] = False,
) -> TokenList:
    """Every live token (admin only): name, role, creation, last use; never the token."""
    records = tokens.list_tokens(session, include_revoked)
    return TokenList(items=[TokenOut.model_validate(record) for record in records])


@router.delete(
    "/{token_id:int}",
    responses=error_responses(404, 409, s404="no such token", s409="a token revoking itself"),
)
def revoke_token(
    token_id: TokenId, request: Request, database: DatabaseDep, admin: AdminToken
) -> TokenOut:
    """Revoke a token (admin only): this server refuses it from its next request on; other
    servers within their token cache's lifetime (``TENSLORA_TOKEN_CACHE_SECONDS``)."""
    if token_id == admin.id:
        # Most likely a slip that would lock the caller out; the CLI can still do it.
        raise Conflict("a token cannot revoke itself: use another admin token, or "
                       "`tenslora token revoke` on the API host")
    # Committed before the cache entry goes, so no request can re-cache the token in between.
    with database.session() as session:
        record = tokens.revoke_token(session, token_id)
    forget_token(request.app, token_id)
    return TokenOut.model_validate(record)
