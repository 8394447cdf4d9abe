"""The FastAPI application: settings, database, schema upgrade and the background reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors
from api.dashboard import mount_dashboard
from api.middleware import CloseUnfinishedBody, SecurityHeaders
from api.responses import SafeJSONResponse
from api.routes import estimates, health, jobs, sweeps, tokens, workers
from api.routing import GuardedRoute
from scheduler.db import Database
from scheduler.migrate import upgrade
from scheduler.queue import reap_expired
from scheduler.settings import Settings

log = logging.getLogger(__name__)


# A claim requeues expired leases first, so a job freed by a dead worker goes out at once; more
# often than this it would be a wasted statement on the hottest request.
CLAIM_REAP_SECONDS = 1.0


class Every:
    """``due()`` is true at most once per ``seconds`` (thread-safe: claims run in a pool)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.seconds
            return True


def _reap_once(database: Database, max_attempts: int) -> int:
    with database.session() as session:
        return reap_expired(session, max_attempts)


async def _reap_forever(database: Database, settings: Settings) -> None:
    """Requeue expired leases even when nobody claims, so no job waits on a dead worker."""
    interval = min(settings.reap_interval_seconds, settings.lease_seconds / 2)
    while True:
        await asyncio.sleep(interval)
        try:
            reaped = await asyncio.to_thread(_reap_once, database, settings.max_attempts)
            if reaped:
                log.info("requeued or failed %d jobs with expired leases", reaped)
        except Exception:
            log.exception("reaper pass failed; retrying in %.1f s", interval)


def create_app(settings: Settings | None = None, upgrade_schema: bool = True) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if upgrade_schema:
            await asyncio.to_thread(upgrade, settings.database_url)
        database = Database(
            settings.database_url, settings.sqlite_busy_timeout_ms, settings.artifacts_dir
        )
        app.state.database = database
        reaper = asyncio.create_task(_reap_forever(database, settings))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            database.dispose()

    app = FastAPI(
        title="tenslora scheduler",
        version="1",
        description="Sweeps in, jobs out exactly once, results back.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.token_cache = {}
    app.state.claim_reaps = Every(min(CLAIM_REAP_SECONDS, settings.lease_seconds / 4))
    errors.install(app)
    # Bodies are read, within each route's limit, only after its token (api.routing); an
    # answer sent before a body arrived closes the connection. Security headers go on every
    # answer (the last added runs first).
    app.router.route_class = GuardedRoute
    app.add_middleware(CloseUnfinishedBody)
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies.strip():
        # Outermost, so every later layer (the login throttle's address) sees the real client.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    # The worker endpoints first: routes are matched in order, and claims are the hot path.
    for router in (jobs.router, sweeps.router, workers.router, tokens.router, estimates.router,
                   health.router):
        app.include_router(router)
    mount_dashboard(app)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn api.app:app` works, without building an app (and reading settings) on import.
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
