"""``tenslora-worker --pack-size 4`` against the real scheduler: real Ray, real training packs.

One fake GPU that holds one process at a time, so the four train jobs run as one pack.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from launch.processes import wait_for
from tests.worker.conftest import Scheduler, job_children, make_scheduler

pytestmark = [pytest.mark.slow, pytest.mark.ray]

STARTUP_S = 120
FLAGS = ("--fake-gpus", "1x64000", "--pack-size", "4", "--max-jobs-per-gpu", "1")


def train(steps: int, **adapter: Any) -> dict[str, Any]:
    return {
        "kind": "train", "task": "synthetic_text", "backbone": "minilm",
        "adapter": adapter,
        "train": {"max_steps": steps, "batch_size": 4, "max_length": 16, "log_every": 5,
                  "max_train_samples": 64, "max_eval_samples": 16},
    }


MIXED = [
    {"adapter": {"method": "lora", "ranks": 2}},
    {"adapter": {"method": "qkv", "factorization": "cp", "ranks": 3}},
    {"adapter": {"method": "att_qkv_depth", "ranks": 2}},
]


def running_pack(scheduler: Scheduler, sweeps: list[int], count: int) -> list[dict] | None:
    jobs = [job for sweep in sweeps for job in scheduler.jobs(sweep)]
    live = [job for job in jobs if job["status"] == "running" and job["pack_id"]]
    return live if len(live) >= count and len({job["pack_id"] for job in live}) == 1 else None


def test_a_pack_of_four_reports_four_results_and_survives_a_cancelled_member(
    tmp_path: Path, start_worker
) -> None:
    scheduler = make_scheduler(tmp_path / "server", lease_seconds=6)
    try:
        kept = scheduler.submit("kept", train(150), configs=MIXED)
        doomed = scheduler.submit("doomed", train(150, method="depth", ranks=2))
        start_worker(scheduler, *FLAGS)
        pack = wait_for("one pack of four", lambda: running_pack(scheduler, [kept, doomed], 4),
                        STARTUP_S)
        with scheduler.client() as client:
            client.post(f"/api/v1/sweeps/{doomed}/cancel").raise_for_status()
        jobs = wait_for("the rest of the pack", lambda: scheduler.all_finished(kept), 300, 1.0)
        assert [job["status"] for job in jobs] == ["succeeded"] * 3, [j["error"] for j in jobs]
        assert {job["pack_id"] for job in jobs} == {pack[0]["pack_id"]}
        assert len({job["result"]["adapter_params"] for job in jobs}) == 3
        assert all(0.0 <= job["result"]["accuracy"] <= 1.0 for job in jobs)
        [cancelled] = scheduler.jobs(doomed)
        assert cancelled["status"] == "cancelled" and cancelled["result"] is None
        with scheduler.client() as client:
            points = client.get(f"/api/v1/jobs/{jobs[0]['id']}/metrics").json()["points"]
        assert any(point["name"] == "train/loss" for point in points)
    finally:
        scheduler.stop()


def test_kill_9_mid_pack_then_restart_runs_every_job_exactly_once(
    tmp_path: Path, start_worker
) -> None:
    scheduler = make_scheduler(tmp_path / "server", lease_seconds=3)
    try:
        sweep = scheduler.submit(
            "crash", train(60), configs=[*MIXED, {"adapter": {"method": "depth", "ranks": 2}}]
        )
        first = start_worker(scheduler, *FLAGS)
        wait_for("one pack of four", lambda: running_pack(scheduler, [sweep], 4), STARTUP_S)
        children = wait_for("the pack's process", lambda: job_children(first.tree()), 30)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        wait_for("the pack to die with the worker", lambda: not job_children(children), 10)
        start_worker(scheduler, *FLAGS, "--drain-timeout", "1")
        jobs = wait_for("every job to finish", lambda: scheduler.all_finished(sweep), 300, 1.0)
        assert [job["status"] for job in jobs] == ["succeeded"] * 4, [j["error"] for j in jobs]
        assert {job["attempt"] for job in jobs} == {2}
        assert len({job["pack_id"] for job in jobs}) == 1
    finally:
        scheduler.stop()
