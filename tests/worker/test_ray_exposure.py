"""The worker's Ray, and ``tenslora sweep tune``'s own, are not open to the network (issue 20,
finding 3).

``python -m worker`` started as a user starts it (no ``RAY_*`` variables, a real server, fake
GPUs): every socket its processes listen on is on loopback, and its Ray requires a token that
lives in a file only the worker's user can read (nothing written to ~/.ray).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launch.processes import REPO, wait_for
from tests.worker.conftest import Scheduler, Worker, descendants, make_scheduler
from worker.ray_env import is_loopback

pytestmark = [pytest.mark.slow, pytest.mark.ray]

STARTUP_S = 120
_USER = re.compile(r'\("([^"]+)",pid=(\d+),')


def listening_sockets(pids: set[int]) -> list[tuple[str, str]]:
    """(process name, local address) of every TCP or UDP socket of ``pids`` that listens."""
    ss = shutil.which("ss")
    assert ss, "the test lists sockets with ss (iproute2)"
    lines = subprocess.run([ss, "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True,
                           text=True, check=True, timeout=30).stdout.splitlines()
    found = []
    for line in lines:
        fields = line.split()
        host = fields[4].rsplit(":", 1)[0].split("%", 1)[0]
        found += [(name, host) for name, pid in _USER.findall(line) if int(pid) in pids]
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_the_workers_ray_listens_on_loopback_only_and_requires_a_token(tmp_path: Path) -> None:
    scheduler: Scheduler = make_scheduler(tmp_path / "server", lease_seconds=30)
    home = tmp_path / "home"
    home.mkdir()
    env = users_env(home, TENSLORA_TOKEN=scheduler.tokens["worker"])
    log_path = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "--api", scheduler.url, "--fake-gpus", "2x4000",
         "--cpu-slots", "1", "--poll-interval", "0.5", "--spool-dir", str(tmp_path / "spool")],
        cwd=REPO, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = Worker(process, log_path)
    try:
        sweep = scheduler.submit("exposure", {"kind": "synthetic", "duration_s": 0.5,
                                              "memory_mb": 100, "outcome": {"accuracy": 1.0}})
        wait_for("the worker to run a job", lambda: scheduler.all_finished(sweep), STARTUP_S)
        assert [job["status"] for job in scheduler.jobs(sweep)] == ["succeeded"], worker.log()
        token_file = assert_ray_closed(process.pid, home)
    finally:
        worker.cleanup()
        scheduler.stop()
    assert not token_file.exists(), "the worker removes its Ray folder, token included"


def test_sweep_tunes_own_ray_listens_on_loopback_only_and_requires_a_token(
    tmp_path: Path,
) -> None:
    """``tenslora sweep tune`` without ``--ray-address`` starts a Ray of its own: closed too."""
    scheduler: Scheduler = make_scheduler(tmp_path / "server", lease_seconds=30)
    home = tmp_path / "home"
    home.mkdir()
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps({"name": "tune-exposure", "base": {
        "kind": "synthetic", "duration_s": 6.0, "memory_mb": 10, "outcome": {"accuracy": 1.0}}}))
    log_path = tmp_path / "tune.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "sweep", "tune", str(sweep_file), "--url", scheduler.url,
         "--token", scheduler.tokens["admin"], "--num-cpus", "2"],
        cwd=REPO, env=users_env(home), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    driver = Worker(process, log_path)
    try:
        def running() -> bool:
            with scheduler.client() as client:
                jobs = client.get("/api/v1/jobs", params={"status": "running"}).json()["items"]
            return bool(jobs)

        wait_for("the trial to run its job", running, STARTUP_S, every=0.2)
        token_file = assert_ray_closed(process.pid, home)
        assert process.wait(timeout=STARTUP_S) == 0, driver.log()
    finally:
        driver.cleanup()
        scheduler.stop()
    assert not token_file.exists(), "the driver removes its Ray folder, token included"


def users_env(home: Path, **extra: str) -> dict[str, str]:
    """As a user's shell has it: none of the variables the tests otherwise set for Ray."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HOME=str(home), **extra)
    return env


def assert_ray_closed(driver_pid: int, home: Path) -> Path:
    """Asserts the Ray below ``driver_pid`` listens on loopback only and requires a token in a
    file only its user reads, with nothing written to ``home``/.ray; returns the token file."""
    pids = descendants(driver_pid) | {driver_pid}
    sockets = listening_sockets(pids)
    names = {name for name, _ in sockets}
    # Not vacuous: Ray's servers are among what was listed.
    assert {"gcs_server", "raylet"} <= names, sockets
    beyond = [(name, host) for name, host in sockets if not is_loopback(host)]
    assert not beyond, f"listening beyond loopback: {beyond}"

    gcs = next(pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().strip()
               == "gcs_server")
    ray_env = environ_of(gcs)
    assert ray_env.get("RAY_AUTH_MODE") == "token"
    token_file = Path(ray_env["RAY_AUTH_TOKEN_PATH"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text()) == 64
    assert not (home / ".ray").exists()
    return token_file
