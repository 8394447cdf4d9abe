"""``tenslora serve`` in its own process group, started until it answers, and its tokens."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from launch.processes import free_port, project_env, stop_group, wait_for
from protocol.client import ApiClient

__all__ = ["RunningServer", "ServerExited", "create_token", "mint_tokens", "sqlite_url",
           "start_server"]


class ServerExited(RuntimeError):
    """The server's process ended while it was expected to answer."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


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


def mint_tokens(
    database_url: str, roles: tuple[str, ...] | None = None, prefix: str = "test"
) -> dict[str, str]:
    """Migrates the database, then stores one token per role (default: every role), each named
    ``"{prefix} {role}"``."""
    from scheduler.migrate import upgrade
    from scheduler.tokens import ROLES

    upgrade(database_url)
    return {role: create_token(database_url, role, f"{prefix} {role}") for role in roles or ROLES}


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
        """True once /healthz answers; raises ``ServerExited`` if the server died instead."""
        if self.process.poll() is not None:
            code = self.process.returncode
            raise ServerExited(f"the server exited with code {code}:\n{self.log()}", code)
        with ApiClient(self.url, None) as api:
            return api.healthy()

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM, then SIGKILL whatever of its group is left."""
        stop_group(self.process, grace_s=grace_s)

    def kill(self) -> None:
        """SIGKILL the whole group at once: the API vanishes as on a crashed host."""
        stop_group(self.process, grace_s=0, leader_signal=signal.SIGKILL)


def start_server(
    database_url: str,
    log_path: Path,
    port: int | None = None,
    timeout: float = 60,
    sleep: Callable[[float], object] = time.sleep,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """Starts ``tenslora serve`` on ``database_url`` (on 127.0.0.1, in this process's folder, its
    output appended to ``log_path``) and waits until /healthz answers; ``env`` adds settings
    (``TENSLORA_...``).

    Raises ``WaitTimedOut`` or ``ServerExited`` (the server stopped first); ``sleep`` waits
    between polls (one that raises ends the wait, the server stopped).
    """
    port = port or free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--no-access-log",
             "--log-level", "warning"],
            env=project_env(TENSLORA_DATABASE_URL=database_url, **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped as one, Ctrl-C reaches only us
        )
    server = RunningServer(process, port, database_url, log_path)
    try:
        wait_for(f"the server on {server.url} to answer /healthz", server.healthy, timeout, 0.1,
                 sleep)
    except BaseException:
        server.stop()
        raise
    return server
