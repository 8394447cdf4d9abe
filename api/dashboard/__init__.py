"""The results dashboard: server-rendered pages on the API's own app and query functions.

``mount_dashboard(app)`` adds the pages, the stylesheet and script, plotly.min.js served from the
installed ``plotly`` package, and the handlers that turn a missing login into a redirect and a
missing sweep or job (or a forbidden action) into an error page.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


def plotly_js_path() -> Path:
    """The minified bundle the installed plotly package ships (never a copy in this repo)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def mount_dashboard(app: FastAPI) -> None:
    from api.dashboard.auth import CrossOrigin, LoginRequired, login_url
    from api.dashboard.routes import PageError, PageForbidden, render, router
    from api.dashboard.throttle import LoginThrottle

    app.state.login_throttle = LoginThrottle(app.state.settings.login_failures_per_minute)

    @app.get("/static/plotly.min.js", include_in_schema=False, name="dashboard_plotly_js")
    def plotly_js() -> FileResponse:
        return FileResponse(
            plotly_js_path(), media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount("/static/dashboard", StaticFiles(directory=STATIC_DIR), name="dashboard_static")
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    def _login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(request, exc.next_url), status_code=303)

    @app.exception_handler(PageError)
    def _error_page(request: Request, exc: PageError) -> Response:
        return render(request, "error.html", {
            "viewer": None, "status_code": exc.status_code, "title": exc.title,
            "detail": exc.detail,
        }, status_code=exc.status_code)

    @app.exception_handler(CrossOrigin)
    def _cross_origin(request: Request, exc: CrossOrigin) -> Response:
        log.warning("refused a cross-origin %s %s (%s)", request.method, request.url.path, exc)
        return _error_page(request, PageForbidden(
            "This request came from another site or page, not from the dashboard itself."))
