"""Fixtures of the scheduler tests: a real Postgres 15 and the real server in a subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch.postgres import PostgresServer, have_postgres, running_postgres
from launch.server import sqlite_url
from tests.helpers.server import Service, start_service


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Postgres started by the tests; skipped only when binaries are missing outside CI."""
    if not have_postgres():
        if os.environ.get("TENSLORA_REQUIRE_POSTGRES"):
            pytest.fail("TENSLORA_REQUIRE_POSTGRES is set but initdb/pg_ctl are not on PATH")
        pytest.skip("Postgres binaries (initdb, pg_ctl) not found")
    with running_postgres(fsync="off") as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres").fresh_database()


Server = Service  # the name these tests use for the running service


LEASE_SECONDS = 2.0


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The real server (uvicorn subprocess) on each backend, one per test module.

    Tests share it; ``queue_is_empty`` cancels every sweep after each test so a claim in one
    test never sees another test's jobs. A module's ``SERVER_LEASE_SECONDS`` overrides the lease.
    """
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "sqlite":
        url = sqlite_url(folder)
    else:
        url = request.getfixturevalue("postgres").fresh_database()
    lease_seconds = getattr(request.module, "SERVER_LEASE_SECONDS", LEASE_SECONDS)
    service = start_service(folder, url, lease_seconds)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def api(server: Server) -> Iterator[Server]:
    """The shared server, with every sweep cancelled after the test."""
    yield server
    with server.client() as client:
        sweeps = client.get("/api/v1/sweeps", params={"limit": 1000}).json()["items"]
        for sweep in sweeps:
            if sweep["status"] != "cancelled":
                client.post(f"/api/v1/sweeps/{sweep['id']}/cancel").raise_for_status()


@pytest.fixture
def database(database_url: str) -> Iterator[Any]:
    """An empty, migrated database on SQLite and on the Postgres the service tests start."""
    from scheduler.db import Database
    from scheduler.migrate import upgrade

    upgrade(database_url)
    db = Database(database_url)
    yield db
    db.dispose()
