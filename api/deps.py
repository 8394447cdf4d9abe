"""Typed dependencies: sessions and role-checked tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.errors import Forbidden, Unauthenticated
from scheduler.settings import Settings
from scheduler.tokens import TokenInfo, find_token, hash_token


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

_bearer = HTTPBearer(auto_error=False, description="a token from `tenslora token create`")


async def get_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
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
        raise Unauthenticated("unknown token")
    ttl = request.app.state.settings.token_cache_seconds
    cache[key] = (token, time.monotonic() + ttl)
    return token


def _lookup(database: Database, raw: str) -> TokenInfo | None:
    with database.session(write=False) as session:
        return find_token(session, raw)


def require_role(*roles: str) -> Callable[[TokenInfo], Coroutine[None, None, TokenInfo]]:
    """A dependency that lets ``roles`` (and admin) through and answers 403 to the rest."""

    async def check(token: Annotated[TokenInfo, Depends(get_token)]) -> TokenInfo:
        if token.role != "admin" and token.role not in roles:
            raise Forbidden(
                f"a {token.role} token may not do this; it needs the role "
                f"{' or '.join((*roles, 'admin'))}"
            )
        return token

    return check


AnyToken = Annotated[TokenInfo, Depends(get_token)]
AdminToken = Annotated[TokenInfo, Depends(require_role("admin"))]
SubmitterToken = Annotated[TokenInfo, Depends(require_role("submitter"))]
WorkerToken = Annotated[TokenInfo, Depends(require_role("worker"))]
