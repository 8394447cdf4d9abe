"""Typed dependencies: sessions and role-checked tokens."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from protocol.vocabulary import Role
from scheduler.db import Database
from scheduler.errors import Forbidden, SchedulerError, Unauthenticated
from scheduler.settings import Settings
from scheduler.tokens import TokenInfo, find_token, hash_token, is_live, mark_used

log = logging.getLogger(__name__)


# Dependencies that do no I/O are ``async`` so FastAPI runs them on the event loop instead of
# handing each to the thread pool (a thread hop per dependency per request adds up).
async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A write session: one transaction per request, committed before the response is sent.

    Creating a session does no I/O; the handler (in the thread pool) runs the statements; the
    commit at exit is one short call.
    """
    with request.app.state.database.session(write=True) as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    with request.app.state.database.session(write=False) as session:
        yield session


# scope="function": commit (and its errors) happen before the response goes out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]

_bearer = HTTPBearer(auto_error=False, description="a token from `tenslora token create`")


async def _verified_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> TokenInfo:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    raw = credentials.credentials
    cache: dict[str, tuple[TokenInfo, float]] = request.app.state.token_cache
    key = hash_token(raw)
    cached = cache.get(key)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    token = await run_in_threadpool(_lookup, request.app.state.database, raw)
    if token is None:
        cache.pop(key, None)
        raise Unauthenticated("unknown or revoked token")
    ttl = request.app.state.settings.token_cache_seconds
    cache[key] = (token, time.monotonic() + ttl)
    return token


#: Where a request keeps the tokens its rules have let through (``TokenRule.authorize``).
_AUTHORIZED = "tenslora.authorized"


@dataclass(frozen=True)
class TokenRule:
    """The tokens a route takes: any live one (no ``roles``), or one of ``roles`` (admin is
    always one). ``fresh``: checked against the database on every call, not the cache.

    A dependency (``Depends(TokenRule(...))``), and what ``api.routing.GuardedRoute`` calls
    before it reads a body: the answer is kept on the request, so the check runs once."""

    roles: tuple[Role, ...] = ()
    fresh: bool = False

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        return await self.authorize(request, credentials)

    async def authorize(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None = None
    ) -> TokenInfo:
        """The request's token if this rule lets it through; 401 or 403 otherwise."""
        authorized: dict[TokenRule, TokenInfo] = request.scope.setdefault(_AUTHORIZED, {})
        if self in authorized:
            return authorized[self]
        if credentials is None:  # called before FastAPI resolved the dependency
            credentials = await _bearer(request)
        token = await _verified_token(request, credentials)
        if self.roles and token.role != Role.admin and token.role not in self.roles:
            raise Forbidden(
                f"a {token.role} token may not do this; it needs the role "
                f"{' or '.join(dict.fromkeys((*self.roles, Role.admin)))}"
            )
        if self.fresh and not await run_in_threadpool(
            _still_live, request.app.state.database, token.id
        ):
            # A revoked admin token must not mint or revoke anything on any server, even
            # within the cache's life.
            forget_token(request.app, token.id)
            raise Unauthenticated("unknown or revoked token")
        authorized[self] = token
        return token


def forget_token(app: FastAPI, token_id: int) -> None:
    """Drop a revoked token from this server's cache, so its next request here is refused."""
    cache: dict[str, tuple[TokenInfo, float]] = app.state.token_cache
    for key, (token, _) in list(cache.items()):
        if token.id == token_id:
            cache.pop(key, None)


def _lookup(database: Database, raw: str) -> TokenInfo | None:
    with database.session(write=False) as session:
        token = find_token(session, raw)
    if token is not None:
        _mark_used(database, token.id)
    return token


def _mark_used(database: Database, token_id: int) -> None:
    # Best effort: a database that takes reads but not writes (a full disk) must still serve reads.
    try:
        with database.session(write=True) as session:
            mark_used(session, token_id)
    except SchedulerError:
        log.warning("could not record the use of token %d", token_id, exc_info=True)


def _still_live(database: Database, token_id: int) -> bool:
    with database.session(write=False) as session:
        return is_live(session, token_id)


AnyToken = Annotated[TokenInfo, Depends(TokenRule())]
AdminToken = Annotated[TokenInfo, Depends(TokenRule((Role.admin,), fresh=True))]
SubmitterToken = Annotated[TokenInfo, Depends(TokenRule((Role.submitter,)))]
WorkerToken = Annotated[TokenInfo, Depends(TokenRule((Role.worker,)))]
