"""The low-severity findings of the turn-3 red team, each against the real server: deep query
values answer 422 (not a RecursionError's 500), the login throttle counts the TCP peer unless a
proxy is trusted, /readyz follows the database while /healthz does not."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from launch.postgres import have_postgres, running_postgres
from tests.helpers.server import start_service
from tests.service.conftest import Server
from tests.service.test_service_api import SYNTHETIC, claim, submit

DEEP = "[" * 1000 + "]" * 1000


@contextmanager
def _browser(api: Server) -> Iterator[httpx.Client]:
    """A client signed in to the dashboard (its pages take a session cookie, not a bearer)."""
    with httpx.Client(base_url=api.url, timeout=30) as client:
        signed_in = client.post("/login", data={"token": api.tokens["submitter"], "next": "/"})
        assert signed_in.status_code == 303, signed_in.text
        yield client


def _finished_sweep(api: Server) -> int:
    sweep = submit(api, {"name": "deep", "base": SYNTHETIC,
                         "configs": [{"tag": "a", "seed": 1}, {"tag": "b", "seed": 2}]})
    with api.client("worker") as client:
        for _ in range(2):
            lease = claim(client)
            assert lease is not None
            client.post(f"/api/v1/jobs/{lease['job']['id']}/complete",
                        json={"lease_id": lease["lease_id"], "result": {"accuracy": 0.5}}
                        ).raise_for_status()
    return int(sweep["id"])


@pytest.mark.parametrize("compare_to", [f"seed:{DEEP}", f"tag:{DEEP}", "seed:" + "{" * 1000,
                                        "tag:a,seed:" + "[" * 5000])
def test_deep_compare_to_is_refused_on_the_api_the_page_and_the_export(
    api: Server, compare_to: str
) -> None:
    sweep_id = _finished_sweep(api)
    params = {"group_by": "tag,seed", "compare_to": compare_to}
    with _browser(api) as browser:
        page = browser.get(f"/sweeps/{sweep_id}", params=params)
        export = browser.get(f"/sweeps/{sweep_id}/results.csv", params=params)
    with api.client() as client:
        answer = client.get(f"/api/v1/sweeps/{sweep_id}/results",
                            params={**params, "group_by": ["tag", "seed"]})
        still_serving = client.get(f"/api/v1/sweeps/{sweep_id}/results",
                                   params={"group_by": "seed", "compare_to": "seed:[[1]]"})
    assert answer.status_code == 422 and "nests deeper" in answer.json()["detail"]
    # The page shows the default table and says why; the export refuses like the API.
    assert page.status_code == 200 and "nests deeper" in page.text
    assert export.status_code in (200, 422), export.text
    assert still_serving.status_code == 422 and "matches no row" in still_serving.text


@pytest.mark.parametrize("group_by", ["a." * 1000 + "a", "," * 5000, "[" * 1000, "tag," * 1000])
def test_deep_or_long_group_by_is_refused(api: Server, group_by: str) -> None:
    sweep_id = _finished_sweep(api)
    with api.client() as client:
        answer = client.get(f"/api/v1/sweeps/{sweep_id}/results", params={"group_by": group_by})
    with _browser(api) as browser:
        page = browser.get(f"/sweeps/{sweep_id}", params={"group_by": group_by})
        export = browser.get(f"/sweeps/{sweep_id}/results.csv", params={"group_by": group_by})
    assert answer.status_code in (200, 422) and page.status_code == 200
    assert export.status_code in (200, 422)
    if "a.a" in group_by or "[" in group_by:
        assert answer.status_code == 422


def _failed_logins(url: str, count: int, forwarded_for: str | None) -> list[int]:
    statuses = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for number in range(count):
            spoof = forwarded_for or f"203.0.113.{number % 250}"
            statuses.append(client.post("/login", data={"token": "tl_guess", "next": "/"},
                                        headers={"X-Forwarded-For": spoof}).status_code)
    return statuses


def test_the_login_throttle_ignores_forwarded_for_unless_a_proxy_is_trusted(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "proxied").mkdir()
    plain = start_service(tmp_path / "plain")
    try:
        # Each attempt claims another address: without a trusted proxy they are all this peer.
        statuses = _failed_logins(plain.url, 30, None)
    finally:
        plain.stop()
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}

    behind = start_service(tmp_path / "proxied", TENSLORA_TRUSTED_PROXIES="127.0.0.1")
    try:
        spread = _failed_logins(behind.url, 30, None)
        victim = _failed_logins(behind.url, 6, "198.51.100.7")
    finally:
        behind.stop()
    # Behind a trusted proxy each forwarded address has its own budget.
    assert set(spread) == {401}
    assert victim == [401] * 5 + [429]


def test_healthz_is_liveness_and_readyz_follows_the_database(api: Server) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.postgres
def test_readyz_answers_503_while_postgres_is_down(tmp_path: Path) -> None:
    if not have_postgres():
        if os.environ.get("TENSLORA_REQUIRE_POSTGRES"):
            pytest.fail("TENSLORA_REQUIRE_POSTGRES is set but initdb/pg_ctl are not on PATH")
        pytest.skip("Postgres binaries (initdb, pg_ctl) not found")
    with running_postgres(fsync="off") as postgres:
        service = start_service(tmp_path, postgres.fresh_database())
        try:
            with httpx.Client(base_url=service.url, timeout=30) as client:
                assert client.get("/readyz").status_code == 200
                postgres.stop()
                down = client.get("/readyz")
                alive = client.get("/healthz")
        finally:
            service.stop()
    assert down.status_code == 503 and "unavailable" in down.json()["detail"]
    assert alive.status_code == 200


def _execute(database_url: str, *statements: str) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                result = connection.execute(text(statement))
                rows = [tuple(row) for row in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


def test_metrics_past_two_to_the_31_points_are_stored(api: Server) -> None:
    """The next metrics id is set past 2^31, as a busy lab's history gets: storing and reading
    points still works (a 32-bit serial answered 503 to every metrics call from there on)."""
    if api.database_url.startswith("postgresql"):
        (column,) = _execute(api.database_url, "SELECT data_type FROM information_schema.columns "
                             "WHERE table_name = 'metrics' AND column_name = 'id'")
        assert column == ("bigint",)
        _execute(api.database_url, "ALTER SEQUENCE metrics_id_seq RESTART WITH 2147483648")
    else:
        _execute(api.database_url, "INSERT INTO metrics (id, job_id, attempt, step, name, value) "
                 "VALUES (2147483647, 0, 1, 0, 'seed-row', NULL)")
    submit(api, {"name": "long-history", "base": SYNTHETIC})
    with api.client("worker") as client:
        lease = claim(client)
        assert lease is not None
        job_id = lease["job"]["id"]
        stored = client.post(f"/api/v1/jobs/{job_id}/metrics", json={
            "lease_id": lease["lease_id"], "points": [{"step": 1, "name": "loss", "value": 0.5}]})
        assert stored.status_code == 200, stored.text
        loss = client.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "loss"}).json()
    assert [(p["step"], p["value"]) for p in loss["points"]] == [(1, 0.5)]
    ((largest,),) = _execute(api.database_url, "SELECT max(id) FROM metrics")
    assert largest > 2**31 - 1
