"""Fixtures of the scheduler tests: a real Postgres 15 and the real server in a subprocess."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
_database_numbers = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1", **extra}


def _as_postgres(*command: str) -> list[str]:
    # initdb refuses to run as root; the sessions (and CI containers) run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@dataclass
class PostgresServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new empty database on the shared server (cheaper than a server per test)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_database_numbers)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Postgres started by the tests; skipped only when binaries are missing outside CI."""
    required = bool(os.environ.get("TENSLORA_REQUIRE_POSTGRES"))
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        if required:
            pytest.fail("TENSLORA_REQUIRE_POSTGRES is set but initdb/pg_ctl are not on PATH")
        pytest.skip("Postgres binaries (initdb, pg_ctl) not found")
    data_dir, socket_dir = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    port = free_port()
    log = socket_dir / "pg.log"
    subprocess.run(
        _as_postgres("initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres", "--no-sync"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        _as_postgres("pg_ctl", "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "start"),
        capture_output=True,
        timeout=120,
    )
    if started.returncode != 0:
        detail = log.read_text() if log.exists() else started.stderr.decode()
        pytest.fail(f"Postgres did not start: {detail}")
    try:
        yield PostgresServer(port)
    finally:
        subprocess.run(
            _as_postgres("pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'scheduler.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres").fresh_database()


@dataclass
class Server:
    base_url: str
    database_url: str
    tokens: dict[str, str]
    lease_seconds: float

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def mint_tokens(database_url: str) -> dict[str, str]:
    from scheduler.db import Database
    from scheduler.migrate import upgrade
    from scheduler.tokens import ROLES, create_token

    upgrade(database_url)
    database = Database(database_url)
    try:
        with database.session() as session:
            return {role: create_token(session, role, f"test {role}") for role in ROLES}
    finally:
        database.dispose()


def start_server(
    database_url: str, lease_seconds: float, log_path: Path, **settings: str
) -> subprocess.Popen:
    """``tenslora serve`` on a free port; ``settings``: more ``TENSLORA_*`` variables."""
    port = free_port()
    env = subprocess_env(
        TENSLORA_DATABASE_URL=database_url,
        TENSLORA_LEASE_SECONDS=str(lease_seconds),
        TENSLORA_REAP_INTERVAL_SECONDS="0.5",
        **settings,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--no-access-log"],
        cwd=REPO,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{process.base_url}/healthz", timeout=1).status_code == 200:  # type: ignore[attr-defined]
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"server did not answer /healthz within 60 s: {log_path.read_text()}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


LEASE_SECONDS = 2.0


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The real server (uvicorn subprocess) on each backend, one per test module.

    Tests share it; ``queue_is_empty`` cancels every sweep after each test so a claim in one
    test never sees another test's jobs.
    """
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "sqlite":
        url = sqlite_url(folder)
    else:
        url = request.getfixturevalue("postgres").fresh_database()
    tokens = mint_tokens(url)
    process = start_server(url, LEASE_SECONDS, folder / "server.log")
    try:
        yield Server(process.base_url, url, tokens, LEASE_SECONDS)  # type: ignore[attr-defined]
    finally:
        stop_server(process)


@pytest.fixture
def api(server: Server) -> Iterator[Server]:
    """The shared server, with every sweep cancelled after the test."""
    yield server
    with server.client() as client:
        sweeps = client.get("/api/v1/sweeps", params={"limit": 1000}).json()["items"]
        for sweep in sweeps:
            if sweep["status"] != "cancelled":
                client.post(f"/api/v1/sweeps/{sweep['id']}/cancel").raise_for_status()
