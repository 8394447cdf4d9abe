"""Dashboard sign-in against the real server on SQLite and Postgres: the cookie holds a session
id (never the token), sign-out and revocation end it on the server, state-changing requests
from any other origin are refused, failed sign-ins are throttled."""

from __future__ import annotations

import hashlib

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from scheduler.settings import Settings
from tests.service.conftest import Server

COOKIE = "tenslora_session"
SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
OTHER_ORIGIN = "http://127.0.0.1:1"


def sign_in(server: Server, role: str = "admin") -> httpx.Response:
    return httpx.post(f"{server.url}/login", data={"token": server.tokens[role], "next": "/"})


def session_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.cookies[COOKIE]


def page(server: Server, path: str, session: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", cookies={COOKIE: session})


def post(server: Server, path: str, session: str | None, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", cookies={COOKIE: session} if session else None,
                      headers=headers)


def stored_session_hashes(server: Server) -> set[str]:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(text("SELECT session_hash FROM dashboard_sessions")))
    finally:
        engine.dispose()


def submit(server: Server, role: str = "submitter") -> dict:
    with server.client(role) as client:
        response = client.post("/api/v1/sweeps", json={"name": "victim", "base": SYNTHETIC,
                                                       "grid": {"seed": [0, 1]}})
    assert response.status_code == 201, response.text
    return response.json()


def status_of(server: Server, sweep_id: int) -> str:
    with server.client("admin") as client:
        return client.get(f"/api/v1/sweeps/{sweep_id}").json()["status"]


def test_the_cookie_holds_a_hashed_expiring_session_id_never_the_token(server: Server) -> None:
    response = sign_in(server)
    session = session_of(response)
    assert session != server.tokens["admin"] and server.tokens["admin"] not in response.text
    cookie = next(v for k, v in response.headers.multi_items()
                  if k == "set-cookie" and v.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP, TENSLORA_COOKIE_SECURE unset
    assert hashlib.sha256(session.encode()).hexdigest() in stored_session_hashes(server)
    assert session not in stored_session_hashes(server)
    assert page(server, "/", session).status_code == 200
    # The API token itself in the cookie signs no one in: only a session id does.
    raw_token = httpx.get(f"{server.url}/", cookies={COOKIE: server.tokens["admin"]})
    assert raw_token.status_code == 303 and "/login" in raw_token.headers["location"]


def test_sign_out_ends_the_session_on_the_server(server: Server) -> None:
    session = session_of(sign_in(server))
    answer = post(server, "/logout", session)
    assert answer.status_code == 303 and f'{COOKIE}=""' in answer.headers["set-cookie"]
    replayed = page(server, "/", session)  # a copy of the cookie kept by an attacker
    assert replayed.status_code == 303 and "/login" in replayed.headers["location"]
    assert hashlib.sha256(session.encode()).hexdigest() not in stored_session_hashes(server)


def test_revoking_the_token_ends_its_sessions(server: Server) -> None:
    with server.client("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"role": "submitter", "name": "leaving"})
        token_id, raw = created.json()["id"], created.json()["token"]
        login = httpx.post(f"{server.url}/login", data={"token": raw, "next": "/"})
        session = session_of(login)
        assert page(server, "/", session).status_code == 200
        assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 200
    assert page(server, "/", session).status_code == 303


def test_state_changes_from_another_origin_are_refused(server: Server) -> None:
    sweep = submit(server, "admin")
    session = session_of(sign_in(server))
    cancel = f"/sweeps/{sweep['id']}/cancel"
    for headers in ({"Origin": OTHER_ORIGIN}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": server.url}):
        assert post(server, cancel, session, **headers).status_code == 403, headers
        assert post(server, "/logout", session, **headers).status_code == 403, headers
        forged = httpx.post(f"{server.url}/login", headers=headers,
                            data={"token": server.tokens["submitter"], "next": "/"})
        assert forged.status_code == 403 and COOKIE not in forged.headers.get("set-cookie", "")
    assert status_of(server, sweep["id"]) == "queued"
    assert page(server, "/", session).status_code == 200  # the session survived the forged logout
    same = post(server, cancel, session, Origin=server.url,
                **{"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 303
    assert status_of(server, sweep["id"]) == "cancelled"


def test_a_submitter_cancels_only_its_own_sweeps_from_the_dashboard(server: Server) -> None:
    others = submit(server, "admin")
    session = session_of(sign_in(server, "submitter"))
    assert "Cancel sweep" not in page(server, f"/sweeps/{others['id']}", session).text
    assert post(server, f"/sweeps/{others['id']}/cancel", session).status_code == 403
    assert status_of(server, others["id"]) == "queued"
    own = submit(server, "submitter")
    assert "Cancel sweep" in page(server, f"/sweeps/{own['id']}", session).text
    assert post(server, f"/sweeps/{own['id']}/cancel", session).status_code == 303
    assert status_of(server, own["id"]) == "cancelled"
    with server.client("admin") as admin:
        admin.post(f"/api/v1/sweeps/{others['id']}/cancel").raise_for_status()


def test_failed_sign_ins_are_throttled(server: Server) -> None:
    """Last in this module: the server then refuses this address's sign-ins for a minute."""
    for _ in range(5):
        wrong = httpx.post(f"{server.url}/login", data={"token": "tl_guess", "next": "/"})
        assert wrong.status_code == 401
    throttled = httpx.post(f"{server.url}/login", data={"token": "tl_guess", "next": "/"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    right = sign_in(server)  # even the right token waits: the guesser learns nothing
    assert right.status_code == 429 and COOKIE not in right.headers.get("set-cookie", "")


def test_the_cookie_is_secure_when_configured_or_over_https(tmp_path) -> None:
    from launch.server import create_token

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    for settings, base_url in ((Settings(database_url=url, cookie_secure=True), "http://t"),
                               (Settings(database_url=url), "https://t")):
        with TestClient(create_app(settings), base_url=base_url) as client:
            token = create_token(url, "admin", "alice")
            response = client.post("/login", data={"token": token, "next": "/"},
                                   follow_redirects=False)
            assert response.status_code == 303
            assert "Secure" in response.headers["set-cookie"]
