"""What a hostile or broken request cannot do, against the real server on SQLite and Postgres:
bodies over the limit, and database failures that must not leak their details."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.db import STORAGE_UNAVAILABLE
from tests.helpers.server import start_service
from tests.service.conftest import Server

SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
MAX_BODY_BYTES = 16 * 1024 * 1024  # TENSLORA_MAX_BODY_MB's default


def _oversized_sweep() -> bytes:
    padding = "x" * (MAX_BODY_BYTES + 1024)
    return b'{"name": "huge", "base": {"kind": "synthetic", "tag": "' + padding.encode() + b'"}}'


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_stored(api: Server) -> None:
    body = _oversized_sweep()
    with api.client("submitter") as client:
        declared = client.post("/api/v1/sweeps", content=body,
                               headers={"Content-Type": "application/json"})
        assert declared.status_code == 413
        assert "TENSLORA_MAX_BODY_MB" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
            for start in range(0, len(body), 1 << 20):
                yield body[start:start + (1 << 20)]

        streamed = client.post("/api/v1/sweeps", content=chunks(),
                               headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert "TENSLORA_MAX_BODY_MB" in streamed.json()["detail"]
        names = [s["name"] for s in client.get("/api/v1/sweeps").json()["items"]]
        assert "huge" not in names
        # The limit is on bytes, not on the request: the next normal one goes through.
        ok = client.post("/api/v1/sweeps", json={"name": "small", "base": SYNTHETIC})
        assert ok.status_code == 201


def test_security_headers_come_with_every_answer(api: Server) -> None:
    with api.client(None) as anonymous:
        for answer in (anonymous.get("/healthz"), anonymous.get("/api/v1/sweeps"),
                       anonymous.get("/login")):
            assert answer.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
def breakable_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """A server of its own (the test breaks its database), with a short SQLite busy timeout;
    and its log."""
    service = start_service(tmp_path, database_url, TENSLORA_SQLITE_BUSY_TIMEOUT_MS="300",
                            TENSLORA_TOKEN_CACHE_SECONDS="0")
    try:
        yield service, service.server.log_path
    finally:
        service.stop()


def _break(database_url: str) -> sqlite3.Connection | None:
    """Make the database refuse work: a held exclusive lock (SQLite) or a dropped database."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        return holder
    import psycopg

    server, name = database_url.rsplit("/", 1)
    port = server.rsplit(":", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                         autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    return None


def test_database_failures_answer_503_with_a_generic_detail(
    breakable_server: tuple[Server, Path],
) -> None:
    server, log = breakable_server
    url = server.database_url
    holder = _break(url)
    with server.client("submitter") as client:
        answers = [client.post("/api/v1/sweeps", json={"name": "outage", "base": SYNTHETIC})]
    if holder is None:  # Postgres: even the token lookup of an unknown caller fails
        with server.client(None) as anonymous:
            anonymous.headers["Authorization"] = "Bearer tl_guessing"
            answers.append(anonymous.get("/api/v1/sweeps"))
    else:
        holder.close()
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": STORAGE_UNAVAILABLE}
        for secret in ("127.0.0.1", "postgres", "psycopg", "sqlite", "locked", url):
            assert secret not in response.text
    assert "storage error" in log.read_text()  # the specifics are for the operator


def test_an_adapter_upload_has_its_own_larger_limit(api: Server) -> None:
    """TENSLORA_MAX_BODY_MB does not cut an adapter upload short: the route's own limit
    (TENSLORA_MAX_ADAPTER_MB, 64) applies, so 17 MiB that are no zip get 422, not 413."""
    with api.client("submitter") as client:
        sweep = client.post("/api/v1/sweeps", json={"name": "upload", "base": SYNTHETIC}).json()
    with api.client("worker") as worker:
        (job,) = worker.get("/api/v1/jobs", params={"sweep_id": sweep["id"]}).json()["items"]
        claim = worker.post("/api/v1/jobs/claim", json={
            "worker_id": "w", "free_memory_mb": 10_000, "job_id": job["id"]}).json()
        answer = worker.put(f"/api/v1/jobs/{job['id']}/adapter",
                            params={"lease_id": claim["lease_id"]},
                            content=b"\0" * (MAX_BODY_BYTES + (1 << 20)),
                            headers={"Content-Type": "application/zip"})
    assert answer.status_code == 422, answer.text
