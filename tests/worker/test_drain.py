"""A second SIGTERM cuts the drain short (issue 20, finding 5).

``tenslora-worker --cpu-slots 2`` runs two real train jobs (MiniLM on the synthetic text task)
with a drain timeout far longer than the test: the first SIGTERM starts the drain, the second
must end both children within seconds and give their jobs back to the queue at the same attempt
(a release, not a lease expiry, which would count an attempt more).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from launch.processes import wait_for
from tests.worker.conftest import job_children, make_scheduler

pytestmark = [pytest.mark.slow, pytest.mark.ray]

STARTUP_S = 180  # Ray, two actors and two MiniLM children on a busy 2-core machine
SECOND_SIGTERM_ENDS_CHILDREN_S = 10.0
TRAIN_FOREVER = {
    "kind": "train", "task": "synthetic_text", "backbone": "minilm",
    "adapter": {"method": "qkv_depth", "ranks": 2},
    "train": {"epochs": 1000, "max_steps": 100_000, "batch_size": 4, "max_length": 16,
              "log_every": 1, "max_train_samples": 32, "max_eval_samples": 16},
}


def test_a_second_sigterm_ends_the_children_and_gives_their_jobs_back(
    tmp_path: Path, start_worker
) -> None:
    # The lease outlasts the test's drain: only a release can bring the jobs back in time.
    scheduler = make_scheduler(tmp_path / "server", lease_seconds=60)
    try:
        sweep = scheduler.submit("drain", TRAIN_FOREVER, grid={"seed": [0, 1]})
        worker = start_worker(scheduler, "--cpu-slots", "2", "--drain-timeout", "600")

        def training() -> set[int] | None:
            running = [job for job in scheduler.jobs(sweep) if job["status"] == "running"]
            children = job_children(worker.tree())
            steps = _steps(scheduler, running)
            return children if len(running) == 2 and len(children) == 2 and steps else None

        children = wait_for("two training children", training, STARTUP_S, every=1.0)
        worker.process.send_signal(signal.SIGTERM)
        wait_for("the drain to start", lambda: "draining" in worker.log(), 30, every=0.2)
        time.sleep(3.0)
        assert job_children(children) == children, "the first SIGTERM must let the jobs run"

        worker.process.send_signal(signal.SIGTERM)
        second_at = time.monotonic()
        wait_for("the children to end", lambda: not job_children(children),
                 SECOND_SIGTERM_ENDS_CHILDREN_S, every=0.1)
        assert time.monotonic() - second_at < SECOND_SIGTERM_ENDS_CHILDREN_S
        assert worker.process.wait(timeout=60) == 0, worker.log()
        jobs = scheduler.jobs(sweep)
        assert [(job["status"], job["attempt"]) for job in jobs] == [("queued", 1)] * 2, jobs
    finally:
        scheduler.stop()


def _steps(scheduler, running: list[dict]) -> bool:
    """True once every running job streamed a training step: its child is training, not loading."""
    with scheduler.client() as client:
        return all(client.get(f"/api/v1/jobs/{job['id']}/metrics").json()["points"]
                   for job in running)
