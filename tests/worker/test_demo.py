"""`tenslora demo`: server + CPU worker + a real (tiny) sweep, and nothing left running after."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from launch.processes import REPO, free_port, project_env, wait_for
from tests.worker.conftest import descendants, remember, still_running

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def demo(tmp_path: Path, port: int, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "demo", "--port", str(port), "--data-dir",
         str(tmp_path / "demo"), *flags],
        cwd=REPO, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def port_is_closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.HTTPError:
        return True
    return False


def test_demo_runs_a_real_sweep_prints_results_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    process = demo(tmp_path, port, "--methods", "lora,qkv_depth", "--seeds", "1",
                   "--steps", "2", "--cpu-slots", "2")
    seen: dict[int, str | None] = {}
    try:
        wait_for("the demo to end",
                 lambda: remember(seen, descendants(process.pid)) or process.poll() is not None,
                 timeout=300, every=0.5)
        output = process.stdout.read()
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "submitted sweep 1: 2 jobs" in output
    table = output[output.index("adapter.method"):]
    assert "lora" in table and "qkv_depth" in table and "accuracy" in table
    assert f"http://127.0.0.1:{port}/docs" in output
    # The best run's adapter was downloaded and its modes analysed, as `tenslora analyze` does.
    best = output[output.index("best run: job #"):]
    assert "/adapter.zip" in best and "rank @ 90%" in best and "Input" in best
    assert port_is_closed(port)
    wait_for("every process of the demo to end", lambda: not still_running(seen), timeout=20)


def test_ctrl_c_stops_the_server_and_the_worker(tmp_path: Path) -> None:
    port = free_port()
    process = demo(tmp_path, port, "--methods", "lora", "--seeds", "1", "--steps", "500")
    seen: dict[int, str | None] = {}
    try:
        log = tmp_path / "demo" / "worker.log"
        wait_for("the worker to start running a job",
                 lambda: remember(seen, descendants(process.pid)) or (
                     log.exists() and "running on cpu" in log.read_text()), timeout=120)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    assert port_is_closed(port)
    wait_for("every process of the demo to end",
             lambda: not still_running(seen),
             timeout=30)

