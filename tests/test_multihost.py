"""Several hosts, one Ray cluster: `ray start --head` as on host A, then a worker and a Tune run
that join it by address, as a second host would (here on one machine, over 127.0.0.1).

Every process shares one Ray token (``project_env``), as the cluster's hosts do
(docs/deployment.md); a process without it is refused."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from launch.processes import REPO, free_port, project_env, stop_group, wait_for
from tests.helpers.server import start_service

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = start_service(tmp_path_factory.mktemp("multihost-service"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head with 2 declared GPUs; `--block` keeps it in our process group to stop it."""
    port = free_port()
    # Ray's socket paths must stay short: a temp dir of its own directly under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="tl-head-", dir="/tmp")
    log = (tmp_path_factory.mktemp("ray-head") / "head.log").open("w")
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        env=project_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"

    def head_is_up() -> bool:
        assert head.poll() is None, "ray start --head exited"
        status = subprocess.run([ray, "status", f"--address={address}"], env=project_env(),
                                capture_output=True, text=True, timeout=60)
        return status.returncode == 0

    try:
        wait_for(f"the Ray head at {address}", head_is_up, 120)
        yield address
    finally:
        # `ray start --block` stops the processes it started on SIGINT.
        stop_group(head, grace_s=30, leader_signal=signal.SIGINT)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _jobs(service, sweep_id):
    with service.client() as client:
        return client.get("/api/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]


def _submit(service, sweep):
    with service.client("submitter") as client:
        response = client.post("/api/v1/sweeps", json=sweep)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _synthetic_sweep(name, n_jobs, duration_s):
    return {"name": name, "grid": {"seed": list(range(n_jobs))},
            "base": {"kind": "synthetic", "duration_s": duration_s, "memory_mb": 3000,
                     "outcome": {"accuracy": 1.0}}}


def _gpus_in_use(ray_head) -> str | None:
    """``ray status``'s GPU usage of the cluster, e.g. ``"1.0/2.0"``."""
    ray = str(Path(sys.executable).parent / "ray")
    status = subprocess.run([ray, "status", f"--address={ray_head}"], env=project_env(),
                            capture_output=True, text=True, timeout=60).stdout
    return next((line.split()[0] for line in status.splitlines() if line.endswith(" GPU")), None)


def _wait_until_gpus_free(ray_head) -> None:
    """A stopped worker's actors die with it, but Ray frees their GPUs a moment later."""
    wait_for("the cluster's GPUs to be free", lambda: _gpus_in_use(ray_head) == "0.0/2.0", 120)


def _join(service, ray_head, folder, name, *flags):
    """``python -m worker`` on 2 fake GPUs joining ``ray_head``; logs to ``folder/worker.log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--api", service.url, "--token", service.tokens["worker"],
         "--ray-address", ray_head, "--fake-gpus", "2x4000", "--poll-interval", "0.5",
         "--name", name, "--spool-dir", str(folder / "spool"), "--drain-timeout", "5", *flags],
        env=project_env(), cwd=REPO, stdout=(folder / "worker.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_a_worker_joins_an_existing_ray_cluster_and_runs_jobs_on_its_gpus(
    service, ray_head, tmp_path
):
    sweep_id = _submit(service, _synthetic_sweep("multihost", 6, 1.0))
    worker = _join(service, ray_head, tmp_path, "host-b")
    try:
        wait_for("the worker to run every job",
                 lambda: all(j["status"] == "succeeded" for j in _jobs(service, sweep_id)), 180)
    finally:
        stop_group(worker, grace_s=30)
    jobs = _jobs(service, sweep_id)
    assert {j["worker_id"] for j in jobs} == {"host-b"}
    assert len({j["device"] for j in jobs}) == 2, "both GPUs of the joined node took jobs"
    log = (tmp_path / "worker.log").read_text()
    assert "existing Ray cluster" in log, log[-2000:]


def test_the_cluster_refuses_whoever_lacks_its_token(service, ray_head, tmp_path):
    ray = str(Path(sys.executable).parent / "ray")
    other_token = project_env(RAY_AUTH_TOKEN=secrets.token_hex(32))
    status = subprocess.run([ray, "status", f"--address={ray_head}"], env=other_token,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode != 0
    assert "InvalidAuthToken" in status.stdout + status.stderr, status.stderr[-2000:]

    # A worker whose host has no token at all (nothing in the environment, no ~/.ray).
    no_token = {key: value for key, value in project_env(HOME=str(tmp_path)).items()
                if key not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    worker = subprocess.run(
        [sys.executable, "-m", "worker", "--api", service.url, "--token",
         service.tokens["worker"], "--ray-address", ray_head, "--fake-gpus", "1x4000",
         "--spool-dir", str(tmp_path / "spool")],
        env=no_token, cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode == 1
    log = worker.stdout + worker.stderr
    assert f"cannot join the Ray cluster at {ray_head}" in log, log[-2000:]
    assert "RAY_AUTH_TOKEN_PATH" in log and "Traceback" not in log, log[-2000:]


def test_a_worker_given_gpus_on_a_joined_cluster_uses_exactly_those(service, ray_head, tmp_path):
    """``--gpus 1`` with ``--ray-address``: one actor, on GPU 1 only, holding one of the
    cluster's two GPUs (the other stays free for whoever else joins)."""
    # The previous test's worker may still hold both GPUs for a moment after it stopped.
    _wait_until_gpus_free(ray_head)
    sweep_id = _submit(service, _synthetic_sweep("given-gpus", 4, 1.5))
    worker = _join(service, ray_head, tmp_path, "host-c", "--gpus", "1")
    seen: list[str | None] = []

    def holds_one_gpu() -> bool:
        # The actor holds its GPU for the worker's life; `ray status` reports it a few seconds
        # late, so read until it settles. A worker holding both would read 2.0/2.0 throughout.
        seen.append(_gpus_in_use(ray_head))
        return seen[-1] == "1.0/2.0"

    try:
        wait_for("the worker to run every job",
                 lambda: all(j["status"] == "succeeded" for j in _jobs(service, sweep_id)), 180)
        wait_for("the cluster to show one GPU in use", holds_one_gpu, 60)
    finally:
        stop_group(worker, grace_s=30)
    assert "2.0/2.0" not in seen, seen
    jobs = _jobs(service, sweep_id)
    assert {(j["worker_id"], j["device"]) for j in jobs} == {("host-c", "fake:1")}
    log = (tmp_path / "worker.log").read_text()
    assert "running on fake:1," in log, log[-2000:]


def test_tune_runs_its_trials_on_the_joined_cluster(service, ray_head, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tune-on-cluster",
        "base": {"kind": "synthetic", "duration_s": 0.2, "memory_mb": 10,
                 "outcome": {"accuracy": 0.5}},
        "grid": {"seed": [0, 1]},
    }))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "sweep", "tune", str(path), "--url", service.url,
         "--token", service.tokens["admin"], "--ray-address", ray_head,
         "--cpus-per-trial", "0.5"],
        env=project_env(), cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_id = int(done.stdout.strip().splitlines()[-1])
    jobs = _jobs(service, sweep_id)
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    # The head declared GPUs, so each trial held one: the job records a GPU device.
    assert {j["device"] for j in jobs} == {"cuda"}
