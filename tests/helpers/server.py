"""The real scheduler server (``tenslora serve`` in its own process group) and its tokens."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.processes import REPO, free_port, project_env, stop_group, wait_for

__all__ = [
    "RunningServer", "Service", "create_token", "mint_tokens", "sqlite_url", "start_server",
    "start_service",
]


def sqlite_url(folder: Path, name: str = "scheduler.db") -> str:
    return f"sqlite:///{folder / name}"


def create_token(database_url: str, role: str, name: str) -> str:
    """A token stored through the scheduler's own function (the schema must exist)."""
    from scheduler.db import Database
    from scheduler.tokens import create_token as store_token

    database = Database(database_url)
    try:
        with database.session() as session:
            return store_token(session, role, name)
    finally:
        database.dispose()


def mint_tokens(database_url: str, roles: tuple[str, ...] | None = None) -> dict[str, str]:
    """Migrates the database, then stores one token per role (default: every role)."""
    from scheduler.migrate import upgrade
    from scheduler.tokens import ROLES

    upgrade(database_url)
    return {role: create_token(database_url, role, f"test {role}") for role in roles or ROLES}


@dataclass
class RunningServer:
    """One ``tenslora serve`` process; ``url`` is its base URL."""

    process: subprocess.Popen[bytes]
    port: int
    database_url: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def healthy(self) -> bool:
        """True once /healthz answers; raises if the server died instead."""
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL whatever of its group is left."""
        stop_group(self.process, grace_s=15)

    def kill(self) -> None:
        """SIGKILL the whole group at once: the API vanishes as on a crashed host."""
        stop_group(self.process, grace_s=0, leader_signal=signal.SIGKILL)


def start_server(
    database_url: str,
    log_path: Path,
    port: int | None = None,
    lease_seconds: float | None = None,
    timeout: float = 60,
    **env: str,
) -> RunningServer:
    """Starts ``tenslora serve`` on ``database_url`` and waits for /healthz.

    ``lease_seconds`` also makes the background reaper run every 0.5 s (lease tests wait on it);
    ``env`` adds settings (``TENSLORA_...``) of the server.
    """
    if lease_seconds is not None:
        env = {"TENSLORA_LEASE_SECONDS": str(lease_seconds),
               "TENSLORA_REAP_INTERVAL_SECONDS": "0.5", **env}
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--no-access-log",
         "--log-level", "warning"],
        cwd=REPO,
        env=project_env(TENSLORA_DATABASE_URL=database_url, **env),
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RunningServer(process, port, database_url, log_path)
    try:
        wait_for(f"the server on {server.url} to answer /healthz", server.healthy, timeout, 0.1)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Service:
    """A running server with a token for each role: what most integration tests talk to."""

    server: RunningServer
    tokens: dict[str, str]
    lease_seconds: float

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def database_url(self) -> str:
        return self.server.database_url

    def client(self, role: str | None = "admin") -> httpx.Client:
        """An HTTP client with ``role``'s bearer token (none when ``role`` is None)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.stop()


def start_service(
    folder: Path, database_url: str | None = None, lease_seconds: float = 20, **env: str
) -> Service:
    """Tokens for every role, then the server on ``database_url`` (default: SQLite in
    ``folder``, which also holds the server's log)."""
    database_url = database_url or sqlite_url(folder)
    tokens = mint_tokens(database_url)
    server = start_server(database_url, folder / "server.log", lease_seconds=lease_seconds, **env)
    return Service(server, tokens, lease_seconds)
