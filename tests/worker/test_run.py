"""`tenslora run SWEEP.yaml`: a sweep file to its end on this machine, its database kept for later.

Each run is the real command (server, worker, Ray, training children); afterwards a fresh
``tenslora serve`` on the same database shows the sweep, and no process of the run is left.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launch.processes import REPO, free_port, project_env, wait_for
from launch.server import create_token, sqlite_url, start_server
from tests.worker.conftest import descendants, remember, still_running

SYNTHETIC_SWEEP = """\
name: two-synthetic
base: {kind: synthetic, duration_s: 0.2, memory_mb: 10}
configs:
  - {tag: lora, outcome: {accuracy: 0.70}}
  - {tag: qkv, outcome: {accuracy: 0.75}}
"""
TRAIN_SWEEP = """\
name: two-train
base:
  kind: train
  task: rotten_tomatoes
  backbone: minilm
  adapter: {ranks: 4}
  train: {max_steps: 2, batch_size: 8, max_length: 24, log_every: 1, eval_every: 2,
          max_train_samples: 16, max_eval_samples: 16}
configs:
  - {tag: lora, adapter: {method: lora}}
  - {tag: qkv_depth, adapter: {method: qkv_depth}}
"""


def run_command(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    """``tenslora run ARGS`` to its end; (exit code, output). Fails if a process outlives it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", *args], cwd=tmp_path, env=project_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: dict[int, str | None] = {}
    try:
        wait_for("the run to end",
                 lambda: remember(seen, descendants(process.pid)) or process.poll() is not None,
                 timeout=300, every=0.5)
        output = process.stdout.read() if process.stdout else ""
    finally:
        process.kill()
    wait_for("every process of the run to end", lambda: not still_running(seen), timeout=30)
    return process.returncode, output


def served_jobs(database_url: str, log_path: Path) -> dict[int, list[dict]]:
    """A later `tenslora serve` on the run's database: its sweeps' jobs, by sweep id."""
    token = create_token(database_url, "admin", "later")
    server = start_server(database_url, log_path)
    try:
        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            sweeps = client.get("/api/v1/sweeps").json()["items"]
            return {
                sweep["id"]: client.get("/api/v1/jobs", params={"sweep_id": sweep["id"]}).json()[
                    "items"]
                for sweep in sweeps
            }
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.ray
def test_run_of_a_synthetic_sweep_keeps_it_in_the_database_serve_opens(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(SYNTHETIC_SWEEP)
    database_url = sqlite_url(tmp_path, "study.db")
    # No --db: the run uses the database `tenslora serve` would (TENSLORA_DATABASE_URL here).
    code, output = run_command(tmp_path, "sweep.yaml", "--workers", "2",
                               "--compare-to", "tag:lora", "--port", str(free_port()),
                               TENSLORA_DATABASE_URL=database_url)
    assert code == 0, output
    assert "submitted sweep 1: 2 jobs" in output
    table = output[output.index("┃ tag"):]
    assert "lora (baseline)" in table and "Δ +0.05 p n/a" in table  # one run each: no test
    assert "Welch" in output
    assert (tmp_path / "study-logs" / "worker.log").exists()
    jobs = served_jobs(database_url, tmp_path / "later.log")
    assert [job["status"] for job in jobs[1]] == ["succeeded", "succeeded"]
    assert sorted(job["result"]["accuracy"] for job in jobs[1]) == [0.70, 0.75]


@pytest.mark.slow
@pytest.mark.ray
def test_run_of_a_tiny_train_sweep_in_one_pack_trains_both_and_prints_the_table(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.yaml").write_text(TRAIN_SWEEP)
    code, output = run_command(tmp_path, "train.yaml", "--db", "runs/train.db", "--workers", "1",
                               "--pack-size", "2", "--compare-to", "tag:lora",
                               "--port", str(free_port()))
    assert code == 0, output
    assert "submitted sweep 1: 2 jobs" in output
    # Grouped as the dashboard groups a tagged training sweep: tag, then adapter.method; the
    # headline metrics only; qkv_depth against the LoRA row.
    table = output[output.index("┃ tag"):]
    header = table.splitlines()[0]
    assert "adapter.method" in header and "accuracy" in header and "wall_s" not in header
    assert "lora (baseline)" in table and "Δ" in table.split("qkv_depth", 1)[1]
    assert "runs failed" not in output
    database_url = sqlite_url(tmp_path / "runs", "train.db")
    assert database_url.removeprefix("sqlite:///") in output  # where to look again later
    jobs = served_jobs(database_url, tmp_path / "later.log")
    assert {job["config"]["adapter"]["method"] for job in jobs[1]} == {"lora", "qkv_depth"}
    assert all(job["status"] == "succeeded" and 0 <= job["result"]["accuracy"] <= 1
               for job in jobs[1])
    # Both jobs share a pack key, so the one slot trained them together, as one pack.
    pack_ids = {job["pack_id"] for job in jobs[1]}
    assert len(pack_ids) == 1 and None not in pack_ids, pack_ids


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sweep.yaml", "--compare-to", "seed:1"], "not one of group_by"),
        (["sweep.yaml", "--group-by", "tag,a..b"], "a..b"),
        (["missing.yaml"], "cannot read"),
        (["sweep.yaml", "--pack-size", "0"], "--pack-size"),
        (["sweep.yaml", "--pack-size", "65"], "--pack-size"),
    ],
)
def test_run_refuses_bad_options_before_starting_anything(
    tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "sweep.yaml").write_text(SYNTHETIC_SWEEP)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "run", *args, "--db", "never.db"], cwd=tmp_path,
        env=project_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not (tmp_path / "never.db").exists() and not (tmp_path / "never-logs").exists()


def test_run_and_demo_are_listed_by_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "cli", "--help"], cwd=REPO, env=project_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and " run " in done.stdout and " demo " in done.stdout


def test_ctrl_c_during_a_run_is_taken_at_a_safe_point_and_a_second_one_at_once(
    tmp_path: Path,
) -> None:
    """The first Ctrl-C only sets a flag (an interrupt raised inside an HTTP client's lock could
    leave it held and hang the stop); the next wait raises. A second Ctrl-C raises at once."""
    import os
    import signal

    from cli.local_cluster import LocalCluster

    cluster = LocalCluster(tmp_path, 0, [])
    # As in a terminal (a suite started in the background inherits Ctrl-C ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with cluster.ctrl_c_stops():
            os.kill(os.getpid(), signal.SIGINT)
            wait_for("the handler to run", cluster.interrupted.is_set, timeout=5)
            with pytest.raises(KeyboardInterrupt):
                cluster.pause(0)
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                wait_for("the second Ctrl-C", lambda: False, timeout=5)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_run_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path: Path) -> None:
    import os
    import signal

    from cli.local_cluster import LocalCluster

    cluster = LocalCluster(tmp_path, 0, [])
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup tenslora run ... &` is
    try:
        with cluster.ctrl_c_stops():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            cluster.pause(0.2)  # nothing was set, nothing raises
        assert not cluster.interrupted.is_set()
    finally:
        signal.signal(signal.SIGINT, before)
