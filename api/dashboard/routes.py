"""The dashboard's pages. Handlers fetch through ``api.dashboard.data`` (the scheduler's own query
functions, the same the JSON API answers with) and hand plain values to the templates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup

from api.dashboard import data, exports, plots, suggest
from api.dashboard.auth import (
    COOKIE,
    LoginRequired,
    Viewer,
    cookie_is_secure,
    current_viewer,
    is_public,
    require_same_origin,
    safe_next,
)
from api.dashboard.formatting import FILTERS
from api.dashboard.tables import ResultsTable, build_table, metric_names
from api.responses import scrub_text
from protocol.models import SIGNIFICANT_P
from protocol.vocabulary import ACTIVE, JOB_STATUSES, WRITER_ROLES
from scheduler.errors import Forbidden, InvalidInput
from scheduler.results import compare_text, default_group_by, group_key
from scheduler.sweeps import may_cancel
from scheduler.tokens import TokenInfo


def _printable(value: Any) -> Any:
    """Every value a template prints, as valid Unicode: a page must render even when a stored
    value holds a lone surrogate (kept by SQLite before the API refused them)."""
    if isinstance(value, str) and not value.isascii():
        scrubbed = scrub_text(value)
        return Markup(scrubbed) if isinstance(value, Markup) else scrubbed
    return value


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters.update(FILTERS)
TEMPLATES.env.finalize = _printable
STATUSES = tuple(status.value for status in JOB_STATUSES)
TEMPLATES.env.globals["statuses"] = STATUSES
TEMPLATES.env.globals["significant_p"] = SIGNIFICANT_P
TEMPLATES.env.globals["group_key"] = group_key


@pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    """Site-relative links, so the pages work behind a reverse proxy on any host name."""
    return str(context["request"].url_for(name, **params).path)


TEMPLATES.env.globals["path_for"] = _path_for
LIVE_PAGES = frozenset({"sweeps.html", "sweep.html", "job.html", "workers.html"})
SWEEPS_PER_PAGE = 20
JOBS_PER_PAGE = 50

router = APIRouter(include_in_schema=False)
ViewerDep = Annotated[Viewer, Depends(current_viewer)]
SameOrigin = [Depends(require_same_origin)]


class PageError(Exception):
    """A dashboard request that gets an error page (HTML) instead of the page it asked for."""

    status_code = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PageNotFound(PageError):
    status_code = 404
    title = "Not found"


class PageForbidden(PageError):
    status_code = 403
    title = "Forbidden"




def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """The whole page, or only its live part when the page's own script asks (``partial=1``)."""
    if request.query_params.get("partial") == "1" and name in LIVE_PAGES:
        name = name.replace(".html", "_main.html")
    context = {"query": _query_builder(request), **context}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def _query_builder(request: Request) -> Any:
    def query(**overrides: Any) -> str:
        params = {k: v for k, v in request.query_params.items() if k != "partial"}
        for key, value in overrides.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = str(value)
        return urlencode(params)

    return query


def _pages(total: int, per_page: int) -> int:
    return max(1, math.ceil(total / per_page))


@router.get("/", response_class=HTMLResponse, name="dashboard_sweeps")
def sweeps_page(request: Request, viewer: ViewerDep, page: int = Query(1, ge=1)) -> HTMLResponse:
    with data.read_session(request) as session:
        sweeps, total = data.list_sweeps(session, SWEEPS_PER_PAGE, (page - 1) * SWEEPS_PER_PAGE)
    live = any(s["live"] for s in sweeps)
    return render(request, "sweeps.html", {
        "viewer": viewer, "sweeps": sweeps, "total": total, "page": page,
        "pages": _pages(total, SWEEPS_PER_PAGE), "live": live,
    })


def _table_for(
    session: Any,
    sweep: dict[str, Any],
    group_by: list[str],
    columns: str,
    metric: str | None,
    compare_to: str | None,
) -> tuple[ResultsTable, list[str]]:
    """The results table, and every metric name the sweep's results carry (for the picker).

    ``compare_to``: the baseline row (None: the LoRA row when there is one; "": none); a bad one
    raises ``InvalidInput``.
    """
    query_by = [*group_by, "task"] if columns == "tasks" else group_by
    results, compare_to = data.compared_results(session, sweep["id"], query_by, compare_to,
                                                group_by)
    names = metric_names(results)
    if columns == "tasks":
        metric = metric if metric in names else (names[0] if names else None)
        table = build_table(results, group_by, metric=metric, columns="tasks",
                            compare_to=compare_to)
        if table.needs_row_results:
            row_results = data.results(session, sweep["id"], group_by)
            table = build_table(results, group_by, row_results=row_results, metric=metric,
                                columns="tasks", compare_to=compare_to)
        return table, names
    return build_table(results, group_by, columns="metrics", compare_to=compare_to), names


def _table_params(
    sweep: dict[str, Any], group_by: str | None, columns: str | None
) -> tuple[list[str], str]:
    """Group-by paths (checked by the API's own parser; raises ``InvalidInput``) and columns."""
    keys = data.parse_group_by(group_by) or default_group_by(sweep.get("definition"))
    if columns not in ("tasks", "metrics"):
        columns = data.default_columns(sweep)
    return keys, columns


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse, name="dashboard_sweep")
def sweep_page(
    request: Request,
    sweep_id: int,
    viewer: ViewerDep,
    group_by: str | None = None,
    columns: str | None = None,
    metric: str | None = None,
    compare_to: str | None = None,
    status: str | None = None,
    jobs_page: int = Query(1, ge=1),
) -> HTMLResponse:
    status = status if status in STATUSES else None
    with data.read_session(request) as session:
        sweep = _sweep_or_404(session, sweep_id)
        table_error = None
        try:
            keys, columns = _table_params(sweep, group_by, columns)
        except InvalidInput as exc:
            table_error = f"group by: {exc.detail}"
            keys, columns = _table_params(sweep, None, columns)
        try:
            table, names = _table_for(session, sweep, keys, columns, metric, compare_to)
        except InvalidInput as exc:  # e.g. a baseline of another grouping: show the default
            table_error = f"compare to: {exc.detail}"
            table, names = _table_for(session, sweep, keys, columns, metric, None)
        jobs, jobs_total = data.list_jobs(
            session, sweep_id, status, JOBS_PER_PAGE, (jobs_page - 1) * JOBS_PER_PAGE
        )
        metric = table.metric or (metric if metric in names else _default_metric(names))
        best_adapters = data.best_adapters(session, sweep_id, keys, metric)
    pareto = plots.pareto_figure(table, None if columns == "tasks" else metric)
    table_query = urlencode({"group_by": ",".join(keys), "columns": columns,
                             "metric": metric or "", "compare_to": table.compare_to or ""})
    return render(request, "sweep.html", {
        "viewer": viewer, "sweep": sweep, "table": table, "group_by": keys,
        "baseline_choices": [(compare_text(row.group), row.label) for row in table.rows],
        "columns": columns, "metric": metric, "metric_choices": names,
        "group_suggestions": data.GROUP_KEYS, "table_query": table_query,
        "pareto_html": pareto and plots.figure_html(pareto, "pareto-plot"),
        "jobs": jobs, "jobs_page": jobs_page, "jobs_pages": _pages(jobs_total, JOBS_PER_PAGE),
        "status_filter": status, "live": sweep["live"], "needs_plotly": True,
        "table_error": table_error, "best_adapters": best_adapters,
        "can_cancel": sweep["live"] and _may_cancel(viewer, sweep["owner_token_id"]),
    })


def _may_cancel(viewer: Viewer, owner_token_id: int | None) -> bool:
    if viewer.public or viewer.token_id is None:
        return False
    return may_cancel(owner_token_id, TokenInfo(viewer.token_id, viewer.name, viewer.role))


def _default_metric(names: list[str]) -> str | None:
    return names[0] if names else None


MAX_ID = 2**31 - 1  # ids are 32-bit integers on both databases


def _sweep_or_404(session: Any, sweep_id: int) -> dict[str, Any]:
    sweep = data.get_sweep(session, sweep_id) if 0 < sweep_id <= MAX_ID else None
    if sweep is None:
        raise PageNotFound(f"There is no sweep with id {sweep_id}.")
    return sweep


@router.get("/sweeps/{sweep_id}/results.{fmt}", name="dashboard_sweep_export")
def sweep_export(
    request: Request,
    sweep_id: int,
    fmt: str,
    viewer: ViewerDep,
    group_by: str | None = None,
    columns: str | None = None,
    metric: str | None = None,
    compare_to: str | None = None,
) -> Response:
    if fmt not in exports.FORMATS:
        raise PageNotFound(f"No download format {fmt!r}; use one of {', '.join(exports.FORMATS)}.")
    with data.read_session(request) as session:
        sweep = _sweep_or_404(session, sweep_id)
        keys, columns = _table_params(sweep, group_by, columns)
        table, _ = _table_for(session, sweep, keys, columns, metric, compare_to)
    body = exports.render(table, fmt, caption=f"{sweep['name']} (sweep {sweep_id})")
    filename = f"sweep-{sweep_id}-results.{fmt}"
    return Response(body, media_type=exports.FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/jobs/{job_id}", response_class=HTMLResponse, name="dashboard_job")
def job_page(request: Request, job_id: int, viewer: ViewerDep) -> HTMLResponse:
    with data.read_session(request) as session:
        job = data.get_job(session, job_id) if 0 < job_id <= MAX_ID else None
        if job is None:
            raise PageNotFound(f"There is no job with id {job_id}.")
        points = data.job_metrics(session, job_id)
        pack = data.pack_jobs(session, job)
        adapter = data.job_adapter(session, job_id)
    return render(request, "job.html", {
        "viewer": viewer, "job": job, "figures": plots.job_figures(points), "pack": pack,
        "adapter": adapter,
        "suggestion": suggest.suggest(job["config"], job["result"], points),
        "live": job["status"] in ACTIVE, "needs_plotly": True,
    })


@router.get("/jobs/{job_id}/adapter.zip", name="dashboard_job_adapter")
def job_adapter_download(request: Request, job_id: int, viewer: ViewerDep) -> Response:
    """``GET /api/v1/jobs/{id}/adapter`` for a signed-in browser (the API wants a bearer).

    A public dashboard shows numbers to anyone, never the trained weights: its anonymous
    viewers are sent to sign in."""
    if viewer.public:
        raise LoginRequired(request.url.path)
    with data.read_session(request) as session:
        archive = data.adapter_archive(session, job_id) if 0 < job_id <= MAX_ID else None
    if archive is None:
        raise PageNotFound(f"Job {job_id} has no adapter to download.")
    filename = f"job-{job_id}-adapter.zip"
    return Response(archive, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.post("/sweeps/{sweep_id}/cancel", name="dashboard_sweep_cancel", dependencies=SameOrigin)
def cancel_sweep(request: Request, sweep_id: int, viewer: ViewerDep) -> Response:
    """The API's cancel, for a signed-in submitter (its own sweeps) or admin (any), never in
    public read-only mode."""
    if viewer.public or viewer.token_id is None or viewer.role not in WRITER_ROLES:
        raise PageForbidden(
            f"Cancelling a sweep needs a signed-in {' or '.join(WRITER_ROLES)} token; "
            f"you are {'reading the public dashboard' if viewer.public else 'a ' + viewer.role}."
        )
    with data.write_session(request) as session:
        _sweep_or_404(session, sweep_id)
        try:
            data.cancel_sweep(session, sweep_id, TokenInfo(viewer.token_id, viewer.name,
                                                           viewer.role))
        except Forbidden as exc:
            raise PageForbidden(exc.detail) from None
    target = request.url_for("dashboard_sweep", sweep_id=sweep_id).path
    return RedirectResponse(target, status_code=303)


@router.get("/workers", response_class=HTMLResponse, name="dashboard_workers")
def workers_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    with data.read_session(request) as session:
        workers, window_s = data.recent_workers(request, session)
    return render(request, "workers.html", {
        "viewer": viewer, "workers": workers, "window_s": window_s,
    })


@router.get("/login", response_class=HTMLResponse, name="dashboard_login_form")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"viewer": None, "next_url": safe_next(next)})


@router.post("/login", response_class=HTMLResponse, name="dashboard_login",
             dependencies=SameOrigin)
def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> Response:
    """Trade a token for a session: the cookie gets a random session id, never the token."""
    address = request.client.host if request.client else "-"
    throttle = request.app.state.login_throttle
    wait_s = throttle.retry_after(address)
    if wait_s:
        refused = render(request, "login.html", {
            "viewer": None, "next_url": safe_next(next),
            "error": f"Too many failed sign-ins: try again in {math.ceil(wait_s)} s.",
        }, status_code=429)
        refused.headers["Retry-After"] = str(math.ceil(wait_s))
        return refused
    raw_session = data.sign_in(request, token.strip())
    if raw_session is None:
        throttle.failed(address)
        return render(request, "login.html", {
            "viewer": None, "next_url": safe_next(next),
            "error": "That token is not valid: check it and try again.",
        }, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, raw_session, max_age=int(request.app.state.settings.session_hours * 3600),
        httponly=True, samesite="strict", secure=cookie_is_secure(request), path="/",
    )
    return response


@router.post("/logout", name="dashboard_logout", dependencies=SameOrigin)
def logout(request: Request) -> Response:
    """End the session on the server (the cookie alone is worthless from now on)."""
    raw_session = request.cookies.get(COOKIE)
    if raw_session:
        data.sign_out(request, raw_session)
    target = "/" if is_public(request) else str(request.url_for("dashboard_login_form").path)
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=cookie_is_secure(request))
    return response
