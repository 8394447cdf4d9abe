"""Who is looking: a token held in an HttpOnly cookie, or anyone when the dashboard is public.

The cookie holds the same bearer token the API takes (checked the same way, by its hash); pages
never print it. ``TENSLORA_DASHBOARD_PUBLIC=1`` lets anyone read the dashboard without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request

from api.dashboard import data

COOKIE = "tenslora_token"
COOKIE_MAX_AGE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    public: bool = False


class LoginRequired(Exception):
    """Raised by a page that needs a viewer; the handler redirects to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def is_public(request: Request) -> bool:
    """``TENSLORA_DASHBOARD_PUBLIC``, read with the service's other settings."""
    return bool(request.app.state.settings.dashboard_public)


def viewer_from_token(request: Request, token: str | None) -> Viewer | None:
    if not token:
        return None
    identity = data.verify_token(request, token)
    return None if identity is None else Viewer(name=identity[0], role=identity[1])


def current_viewer(request: Request) -> Viewer:
    """The signed-in viewer, or the anonymous public one; otherwise off to the login form."""
    viewer = viewer_from_token(request, request.cookies.get(COOKIE))
    if viewer is not None:
        return viewer
    if is_public(request):
        return Viewer(name="public", role="reader", public=True)
    raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))


def login_url(request: Request, next_url: str) -> str:
    return f"{request.url_for('dashboard_login_form').path}?next={quote(next_url, safe='')}"


def safe_next(next_url: str | None) -> str:
    """Only same-site paths: a login form must not redirect anyone elsewhere."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//"):
        return "/"
    return next_url
