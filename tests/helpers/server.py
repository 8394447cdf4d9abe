"""The real server with a token for each role and short leases: what most integration tests
talk to. Starting it, its tokens and stopping it are ``launch.server``'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from launch.server import RunningServer, mint_tokens, sqlite_url, start_server

__all__ = ["Service", "lease_settings", "start_service"]


def lease_settings(lease_seconds: float) -> dict[str, str]:
    """Server settings for leases of ``lease_seconds``, reaped every 0.5 s (lease tests wait on
    the reaper)."""
    return {"TENSLORA_LEASE_SECONDS": str(lease_seconds), "TENSLORA_REAP_INTERVAL_SECONDS": "0.5"}


@dataclass
class Service:
    """A running server with a token for each role."""

    server: RunningServer
    tokens: dict[str, str]
    lease_seconds: float
    artifacts: Path  #: the server's TENSLORA_ARTIFACTS_DIR

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
    ``folder``, which also holds the server's log and, unless ``env`` names another, its
    adapter files)."""
    database_url = database_url or sqlite_url(folder)
    tokens = mint_tokens(database_url)
    env = {"TENSLORA_ARTIFACTS_DIR": str(folder / "artifacts"), **env}
    server = start_server(database_url, folder / "server.log",
                          env={**lease_settings(lease_seconds), **env})
    return Service(server, tokens, lease_seconds, Path(env["TENSLORA_ARTIFACTS_DIR"]))
