"""Who is looking, and whether a state-changing request really comes from the dashboard.

Signing in trades an API token for a dashboard session: the cookie holds a random session id
(its hash is stored, with an expiry), never the token. ``TENSLORA_DASHBOARD_PUBLIC=1`` lets
anyone read the dashboard without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request

from api.dashboard import data

COOKIE = "tenslora_session"


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    public: bool = False
    token_id: int | None = None


class LoginRequired(Exception):
    """Raised by a page that needs a viewer; the handler redirects to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CrossOrigin(Exception):
    """A state-changing request that another site (or another port of this host) sent."""


def is_public(request: Request) -> bool:
    """``TENSLORA_DASHBOARD_PUBLIC``, read with the service's other settings."""
    return bool(request.app.state.settings.dashboard_public)


def signed_in_viewer(request: Request) -> Viewer | None:
    raw = request.cookies.get(COOKIE)
    token = data.session_token(request, raw) if raw else None
    if token is None:
        return None
    return Viewer(name=token.name, role=token.role, token_id=token.id)


def current_viewer(request: Request) -> Viewer:
    """The signed-in viewer, or the anonymous public one; otherwise off to the login form."""
    viewer = signed_in_viewer(request)
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
    if "\\" in next_url or any(ord(c) < 0x20 for c in next_url):
        return "/"  # browsers read "/\\evil.example" as another host
    return next_url


async def require_same_origin(request: Request) -> None:
    """Refuse (``CrossOrigin``) a request a browser sent from any other origin.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current browser) or,
    failing that, ``Origin`` (sent with every cross-origin POST). A page on another port of
    this host is ``same-site``, not ``same-origin``, so it is refused too. A request with
    neither header is not from a browser (curl, a script), and a script holding no cookie
    cannot act for anyone.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise CrossOrigin(f"Sec-Fetch-Site: {site}")
        return
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        raise CrossOrigin(f"Origin: {origin}")


def cookie_is_secure(request: Request) -> bool:
    return bool(request.app.state.settings.cookie_secure) or request.url.scheme == "https"
