"""A real scheduler server for the deployment tests: uvicorn in a subprocess on SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports the project (here and in CI)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        **extra,
    }


@dataclass
class Service:
    url: str
    tokens: dict[str, str]
    process: subprocess.Popen

    def client(self, role: str = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_service(folder: Path) -> Service:
    """Tokens for every role, then the server; raises if /healthz does not answer in 60 s."""
    database_url = f"sqlite:///{folder / 'scheduler.db'}"
    env = project_env(TENSLORA_DATABASE_URL=database_url, TENSLORA_LEASE_SECONDS="20")
    tokens = {}
    for role in ("admin", "submitter", "worker"):
        done = subprocess.run(
            [sys.executable, "-m", "cli", "token", "create", "--role", role, "--name", role],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        )
        tokens[role] = done.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--no-access-log"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    service = Service(f"http://127.0.0.1:{port}", tokens, process)
    wait_for(lambda: _healthy(service), 60, f"server on {service.url} to answer /healthz")
    return service


def _healthy(service: Service) -> bool:
    if service.process.poll() is not None:
        raise RuntimeError(f"server exited with {service.process.returncode}")
    try:
        return httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(
    process: subprocess.Popen, grace_s: float = 20, leader_signal: int | None = None
) -> None:
    """SIGTERM the process group we started (or ``leader_signal`` to its leader alone, which
    then stops the rest itself), then SIGKILL what is left of the group."""
    if process.poll() is None:
        if leader_signal is None:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(leader_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
