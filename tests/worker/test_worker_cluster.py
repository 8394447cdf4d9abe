"""``tenslora-worker`` against the real scheduler: real processes, real Ray, declared fake GPUs.

One server and one worker (two fake GPUs of 4000 MiB) serve the tests of this module in turn;
the kill -9 and drain tests start their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from launch.processes import REPO, project_env, wait_for
from tests.worker.conftest import (
    Scheduler,
    Worker,
    descendants,
    job_children,
    launch_worker,
    make_scheduler,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray]

GPU_MB = 4000
STARTUP_S = 120  # Ray and the actors on a busy 2-core machine


def synthetic(duration_s: float, memory_mb: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "synthetic", "duration_s": duration_s, "memory_mb": memory_mb, **extra}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scheduler, Worker]]:
    # The lease outlives the API outage of the spool test, so the report still counts after it.
    scheduler = make_scheduler(tmp_path_factory.mktemp("server"), lease_seconds=12)
    worker = launch_worker(
        scheduler, tmp_path_factory.mktemp("worker"), "--fake-gpus", f"2x{GPU_MB}",
        "--max-jobs-per-gpu", "4",
    )
    try:
        yield scheduler, worker
    finally:
        worker.cleanup()
        scheduler.stop()


def running(scheduler: Scheduler, sweep_id: int, count: int) -> list[dict[str, Any]] | None:
    jobs = [job for job in scheduler.jobs(sweep_id) if job["status"] == "running"]
    return jobs if len(jobs) >= count else None


def peak_per_device(jobs: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """device -> (most jobs at once, most memory at once), from the server's start/finish times."""
    peaks: dict[str, tuple[int, int]] = {}
    for device in {job["device"] for job in jobs}:
        mine = [job for job in jobs if job["device"] == device]
        edges = []
        for job in mine:
            memory = job["config"]["memory_mb"]
            edges.append((datetime.fromisoformat(job["started_at"]), 1, memory))
            edges.append((datetime.fromisoformat(job["finished_at"]), -1, -memory))
        count = memory = most_jobs = most_memory = 0
        for _, step, mb in sorted(edges, key=lambda edge: (edge[0], edge[1])):
            count, memory = count + step, memory + mb
            most_jobs, most_memory = max(most_jobs, count), max(most_memory, memory)
        peaks[device] = (most_jobs, most_memory)
    return peaks


def test_jobs_land_on_both_gpus_and_pack_without_exceeding_memory(
    cluster: tuple[Scheduler, Worker],
) -> None:
    scheduler, _ = cluster
    sweep = scheduler.submit(
        "pack", synthetic(2.0, 1500, outcome={"accuracy": 0.5}), grid={"seed": list(range(8))}
    )
    jobs = wait_for("the sweep to finish", lambda: scheduler.all_finished(sweep), STARTUP_S)
    assert [job["status"] for job in jobs] == ["succeeded"] * 8
    assert all(job["result"] == {"accuracy": 0.5} for job in jobs)
    peaks = peak_per_device(jobs)
    assert set(peaks) == {"fake:0", "fake:1"}
    for device, (most_jobs, most_memory) in peaks.items():
        assert most_jobs >= 2, f"{device} never ran two jobs at once: {peaks}"
        assert most_memory <= GPU_MB, f"{device} held {most_memory} MiB of {GPU_MB}"


def test_cancelling_a_sweep_stops_its_running_jobs(cluster: tuple[Scheduler, Worker]) -> None:
    scheduler, worker = cluster
    sweep = scheduler.submit("long", synthetic(300.0, 1500), grid={"seed": [0, 1]})
    wait_for("two running jobs", lambda: running(scheduler, sweep, 2), STARTUP_S)
    children = wait_for("their child processes", lambda: job_children(worker.tree()), 10)
    with scheduler.client() as client:
        client.post(f"/api/v1/sweeps/{sweep}/cancel").raise_for_status()
    # A third of the lease between heartbeats, and a little for the kill.
    wait_for("the children to die", lambda: not job_children(children), 12 / 3 + 5)
    assert {job["status"] for job in scheduler.jobs(sweep)} == {"cancelled"}
    assert worker.process.poll() is None, worker.log()


def test_results_reach_the_api_after_an_outage(cluster: tuple[Scheduler, Worker]) -> None:
    scheduler, worker = cluster
    sweep = scheduler.submit("outage", synthetic(2.0, 1000, outcome={"f1": 0.25}))
    wait_for("the job to run", lambda: running(scheduler, sweep, 1), STARTUP_S)
    [job] = scheduler.jobs(sweep)
    scheduler.stop()
    try:
        time.sleep(0.5)
        wait_for("the job to end while the API is down",
                 lambda: not job_children(worker.tree()), 15)
        # Its report meets a closed port and stays on disk.
        spooled = wait_for("the report in the spool", lambda: worker.spooled(job["id"]), 10)
        report = json.loads(spooled[0].read_text())
    finally:
        scheduler.start()
    jobs = wait_for("the spooled result", lambda: scheduler.all_finished(sweep), 20)
    assert jobs[0]["status"] == "succeeded", jobs
    assert jobs[0]["result"] == {"f1": 0.25}
    assert report["outcome"] == "succeeded" and report["result"] == {"f1": 0.25}  # resent
    wait_for("the spool to empty", lambda: not worker.spooled(job["id"]), 10)


def test_a_real_train_job_runs_end_to_end_on_cpu(cluster: tuple[Scheduler, Worker]) -> None:
    scheduler, _ = cluster
    spec = {
        "kind": "train", "task": "synthetic_text", "backbone": "minilm",
        "adapter": {"method": "qkv_depth", "ranks": 2},
        "train": {"max_steps": 3, "batch_size": 4, "max_length": 16, "log_every": 1,
                  "max_train_samples": 32, "max_eval_samples": 16},
    }
    sweep = scheduler.submit("train", spec)
    jobs = wait_for("the train job", lambda: scheduler.all_finished(sweep), 180, every=1.0)
    job = jobs[0]
    assert job["status"] == "succeeded", job["error"]
    assert 0.0 <= job["result"]["accuracy"] <= 1.0
    assert job["result"]["adapter_params"] > 0
    with scheduler.client() as client:
        points = client.get(f"/api/v1/jobs/{job['id']}/metrics").json()["points"]
    assert {"step", "name", "value"} <= set(points[0])
    assert len({point["step"] for point in points}) >= 2, "metrics were not streamed per step"


def test_an_actor_that_dies_is_replaced(cluster: tuple[Scheduler, Worker]) -> None:
    scheduler, worker = cluster
    def actors() -> set[int]:
        return {pid for pid in descendants(worker.process.pid) if b"GpuActor" in _cmdline(pid)}

    [killed, _] = wait_for("two actors", lambda: len(actors()) == 2 and actors(), 10)
    os.kill(killed, signal.SIGKILL)
    wait_for("a new actor", lambda: len(actors() - {killed}) == 2, 60)
    sweep = scheduler.submit("after", synthetic(1.0, 1500), grid={"seed": list(range(6))})
    jobs = wait_for("the sweep to finish", lambda: scheduler.all_finished(sweep), STARTUP_S)
    assert [job["status"] for job in jobs] == ["succeeded"] * 6
    assert {job["device"] for job in jobs} == {"fake:0", "fake:1"}
    assert worker.process.poll() is None, worker.log()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_refused_token_is_a_clear_error(cluster: tuple[Scheduler, Worker]) -> None:
    scheduler, _ = cluster
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--api", scheduler.url, "--token", "wrong",
         "--fake-gpus", "1x100"],
        cwd=REPO, env=project_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "refused the token" in result.stderr and "Traceback" not in result.stderr


def test_kill_9_then_restart_runs_every_job_exactly_once(tmp_path: Path, start_worker) -> None:
    scheduler = make_scheduler(tmp_path / "server", lease_seconds=3)
    try:
        # One 3000 MiB job per 4000 MiB GPU at a time: two run when the worker dies.
        sweep = scheduler.submit("crash", synthetic(4.0, 3000), grid={"seed": [0, 1, 2, 3]})
        first = start_worker(scheduler, "--fake-gpus", f"2x{GPU_MB}")
        interrupted = wait_for("two running jobs", lambda: running(scheduler, sweep, 2), STARTUP_S)
        children = wait_for("their children", lambda: job_children(first.tree()), 10)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        wait_for("the children to die with the worker", lambda: not job_children(children), 10)

        second = start_worker(scheduler, "--fake-gpus", f"2x{GPU_MB}", "--drain-timeout", "1")
        jobs = wait_for("every job to finish", lambda: scheduler.all_finished(sweep), STARTUP_S)
        assert [job["status"] for job in jobs] == ["succeeded"] * 4
        attempts = {job["id"]: job["attempt"] for job in jobs}
        for job in interrupted:
            assert attempts.pop(job["id"]) == 2
        assert set(attempts.values()) == {1}

        # SIGTERM drains: a job that cannot finish in time goes back to the queue, exit 0.
        long = scheduler.submit("drain", synthetic(300.0, 1000))
        wait_for("the long job to run", lambda: running(scheduler, long, 1), 30)
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=60) == 0, second.log()
        [job] = scheduler.jobs(long)
        assert (job["status"], job["attempt"]) == ("queued", 1)
        assert not job_children(second.tree())
    finally:
        scheduler.stop()
