"""Fixtures of the worker tests: the real scheduler server and real ``tenslora-worker`` processes.

Every process here starts in its own session and is killed (whole tree) at teardown; every wait
is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from launch.processes import REPO, free_port, project_env
from launch.server import RunningServer, mint_tokens, sqlite_url, start_server
from tests.helpers.server import lease_settings


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def job_children(pids: set[int]) -> set[int]:
    """The ``worker.child`` processes among ``pids`` that are still alive."""
    alive = set()
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"worker.child" in cmdline and state != "Z":
            alive.add(pid)
    return alive


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``: tells a process from a later one with the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def remember(seen: dict[int, str | None], pids: set[int]) -> None:
    for pid in pids:
        seen.setdefault(pid, start_time(pid))


def still_running(seen: dict[int, str | None]) -> set[int]:
    """The remembered processes that are alive (not zombies) and not a later reuse of the pid."""
    alive = set()
    for pid, started in seen.items():
        if started is None or start_time(pid) != started:
            continue
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def kill_all(processes: dict[int, str | None]) -> None:
    """SIGKILLs each (pid, start time) still alive, never a process that reused the pid."""
    for pid, started in processes.items():
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Scheduler:
    """The real server (``tenslora serve``) on an SQLite file, restartable on the same port."""

    folder: Path
    lease_seconds: float
    port: int = field(default_factory=free_port)
    server: RunningServer | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    #: Settings (``TENSLORA_...``) of the server, read at each ``start``.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return sqlite_url(self.folder)

    def mint_tokens(self) -> None:
        self.tokens = mint_tokens(self.database_url, ("admin", "worker"))

    def start(self) -> None:
        self.server = start_server(
            self.database_url, self.folder / "server.log", self.port,
            env={**lease_settings(self.lease_seconds), **self.env},
        )

    def stop(self) -> None:
        """Kills the server at once (a crashed API host), if it runs."""
        if self.server is not None:
            self.server.kill()

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens['admin']}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def submit(self, name: str, base: dict[str, Any], **extra: Any) -> int:
        with self.client() as client:
            response = client.post("/api/v1/sweeps", json={"name": name, "base": base, **extra})
            assert response.status_code == 201, response.text
            return response.json()["id"]

    def jobs(self, sweep_id: int) -> list[dict[str, Any]]:
        with self.client() as client:
            response = client.get("/api/v1/jobs", params={"sweep_id": sweep_id, "limit": 1000})
            response.raise_for_status()
            return response.json()["items"]

    def all_finished(self, sweep_id: int) -> list[dict[str, Any]] | None:
        jobs = self.jobs(sweep_id)
        done = all(job["status"] in ("succeeded", "failed", "cancelled") for job in jobs)
        return jobs if done else None


@dataclass
class Worker:
    """One ``python -m worker`` process (the Ray driver) and what it started."""

    process: subprocess.Popen
    log_path: Path
    seen: dict[int, str | None] = field(default_factory=dict)

    def tree(self) -> set[int]:
        """Every process the worker started so far (alive or not)."""
        remember(self.seen, descendants(self.process.pid))
        return set(self.seen)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def spooled(self, job_id: int) -> list[Path]:
        """The reports of ``job_id`` waiting in the worker's spool (see ``launch_worker``)."""
        return sorted((self.log_path.parent / "spool").glob(f"job-{job_id}-*.json"))

    def cleanup(self) -> None:
        self.tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        kill_all(self.seen)  # Ray helpers orphaned by a kill -9 linger otherwise


def launch_worker(scheduler: Scheduler, folder: Path, *flags: str) -> Worker:
    """Starts ``python -m worker`` (spool and logs under ``folder``) against ``scheduler``."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "--api", scheduler.url, "--poll-interval", "0.5",
         "--spool-dir", str(folder / "spool"), *flags],
        cwd=REPO,
        env=project_env(TENSLORA_TOKEN=scheduler.tokens["worker"]),
        stdout=log_path.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Worker(process, log_path)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``start_worker(scheduler, *flags)``; everything the workers started dies at teardown."""
    started: list[Worker] = []

    def start(scheduler: Scheduler, *flags: str) -> Worker:
        # Restarts share one folder: a worker on a host finds what the last one spooled.
        started.append(launch_worker(scheduler, tmp_path / "worker", *flags))
        return started[-1]

    yield start
    for worker in started:
        worker.cleanup()


def make_scheduler(folder: Path, lease_seconds: float) -> Scheduler:
    folder.mkdir(parents=True, exist_ok=True)
    scheduler = Scheduler(folder, lease_seconds)
    scheduler.mint_tokens()
    scheduler.start()
    return scheduler
