"""Learned memory estimates (issue 20, finding 4): a reported peak no device could hold is refused,
so one bad ``complete`` cannot make a shape unclaimable; an admin lists and resets estimates
over the API and with ``tenslora estimates``, on SQLite and on Postgres."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from launch.processes import REPO, project_env
from scheduler.errors import InvalidInput
from scheduler.memory import formula_memory_mb, shape_key
from scheduler.models import Job
from scheduler.packs import claim_pack
from scheduler.queue import claim_job, complete_job, release_job
from scheduler.sweeps import create_sweep
from tenslora.core.job_spec import parse_spec
from tests.service.conftest import Server

# The test makes several calls between a claim and its complete: a lease that outlives them.
SERVER_LEASE_SECONDS = 60.0
# A batch size no other test uses, so the shape's estimate is this module's alone.
TRAIN = {"kind": "train", "task": "cola", "backbone": "minilm", "train": {"batch_size": 23}}
DEVICE_MB = 8000


def _shape_and_formula(config: dict[str, Any]) -> tuple[str, int]:
    spec = parse_spec(config)
    key = shape_key(spec)
    assert key is not None
    return key, formula_memory_mb(spec)  # type: ignore[arg-type]


def _claim(client: httpx.Client, free_mb: int, **extra: Any) -> dict[str, Any] | None:
    body = {"worker_id": "w", "device": "cuda:0", "free_memory_mb": free_mb, **extra}
    response = client.post("/api/v1/jobs/claim", json=body)
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def _complete(client: httpx.Client, lease: dict[str, Any], peak: Any) -> httpx.Response:
    return client.post(f"/api/v1/jobs/{lease['job']['id']}/complete",
                       json={"lease_id": lease["lease_id"], "result": {"peak_memory_mb": peak}})


def _queued_estimates(api: Server, sweep_id: int) -> set[int]:
    with api.client() as client:
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]
    return {job["memory_estimate_mb"] for job in jobs if job["status"] == "queued"}


def _estimates(api: Server, role: str = "admin") -> httpx.Response:
    with api.client(role) as client:
        return client.get("/api/v1/estimates")


def test_a_peak_no_device_could_hold_is_refused_and_the_shape_stays_claimable(
    api: Server,
) -> None:
    with api.client("submitter") as client:
        sweep = client.post("/api/v1/sweeps", json={
            "name": "poison", "base": TRAIN, "grid": {"seed": [0, 1, 2]}}).json()
    with api.client("worker") as client:
        lease = _claim(client, 10**6, device_memory_mb=DEVICE_MB)
        assert lease is not None
        shape, formula = _shape_and_formula(lease["job"]["config"])
        refused = _complete(client, lease, 1e12)
        assert refused.status_code == 422, refused.text
        assert "peak_memory_mb" in refused.json()["detail"]
        assert f"{DEVICE_MB} MiB" in refused.json()["detail"]
        for peak in (DEVICE_MB + 1, 0, -5, "lots", True, None):
            assert _complete(client, lease, peak).status_code == 422, peak
        assert _queued_estimates(api, sweep["id"]) == {formula}
        assert shape not in {item["shape"] for item in _estimates(api).json()["items"]}
        other = _claim(client, formula)  # the shape's jobs still fit where they did
        assert other is not None and other["job"]["sweep_id"] == sweep["id"]

        # The refused report stored nothing: the lease is still the worker's to report with.
        assert _complete(client, lease, 700.4).status_code == 200
    assert _queued_estimates(api, sweep["id"]) == {700}
    [learned] = [item for item in _estimates(api).json()["items"] if item["shape"] == shape]
    assert learned["peak_memory_mb"] == 700 and learned["pack_share_mb"] is None
    assert learned["formula_mb"] == formula and learned["queued_jobs"] == 1

    assert _estimates(api, "worker").status_code == 403
    with api.client() as client:
        reset = client.delete(f"/api/v1/estimates/{shape}")
        assert reset.status_code == 200, reset.text
        assert reset.json()["queued_jobs"] == 1 and reset.json()["peak_memory_mb"] is None
        again = client.delete(f"/api/v1/estimates/{shape}")
        assert again.status_code == 404 and "no learned estimate" in again.json()["detail"]
    assert _queued_estimates(api, sweep["id"]) == {formula}


def test_a_claim_without_device_memory_bounds_peaks_by_the_memory_it_offered(api: Server) -> None:
    with api.client("submitter") as client:
        client.post("/api/v1/sweeps", json={"name": "offer", "base": TRAIN}).raise_for_status()
    with api.client("worker") as client:
        lease = _claim(client, 5000)
        assert lease is not None
        refused = _complete(client, lease, 5001)
        assert refused.status_code == 422 and "5000 MiB" in refused.json()["detail"]
        assert _complete(client, lease, 4999).status_code == 200
    shape, _ = _shape_and_formula(lease["job"]["config"])
    with api.client() as client:
        client.delete(f"/api/v1/estimates/{shape}").raise_for_status()


def test_pack_claims_record_the_device_memory_and_a_requeue_forgets_it(database) -> None:
    with database.session() as session:
        create_sweep(session, "packs", TRAIN, grid={"seed": [0, 1]})
    with database.session() as session:
        pack = claim_pack(session, "w", "cuda:0", 10**6, 2, 60, 3, device_memory_mb=DEVICE_MB)
        assert pack is not None and len(pack.claims) == 2
    first, second = pack.claims
    assert first.job.device_memory_mb == DEVICE_MB
    with pytest.raises(InvalidInput, match="8000 MiB"), database.session() as session:
        complete_job(session, first.job.id, first.lease_id, {"peak_memory_mb": 1e12})
    with database.session() as session:
        release_job(session, second.job.id, second.lease_id)
        assert session.get(Job, second.job.id).device_memory_mb is None
        lone = claim_job(session, "w", None, 10**6, 60, 3)
    assert lone is not None and lone.job.device_memory_mb == 10**6  # this claim's offer


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "estimates", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _learn_a_peak(database, peak_mb: int) -> tuple[str, int]:
    """A train sweep of two jobs on ``database``, one of which reported ``peak_mb``."""
    with database.session() as session:
        create_sweep(session, "learned", TRAIN, grid={"seed": [0, 1]})
    with database.session() as session:
        claim = claim_job(session, "w", "cuda:0", 10**6, 60, 3, device_memory_mb=DEVICE_MB)
        assert claim is not None
        complete_job(session, claim.job.id, claim.lease_id, {"peak_memory_mb": peak_mb})
    return _shape_and_formula(claim.job.config)


def test_estimates_list_and_reset_on_the_local_database(database, database_url: str) -> None:
    shape, formula = _learn_a_peak(database, 1234)
    env = project_env(TENSLORA_DATABASE_URL=database_url)
    env.pop("TENSLORA_API_URL", None)
    listed = _cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(shape)]
    assert row.split()[1:5] == ["1234", "-", str(formula), "1"]
    reset = _cli(env, "reset", shape)
    assert reset.returncode == 0, reset.stderr
    assert f"reset {shape}: 1 queued jobs now estimated at {formula} MiB" in reset.stdout
    again = _cli(env, "reset", shape)
    assert again.returncode == 2 and "no learned estimate for shape" in again.stderr


def test_estimates_list_and_reset_over_http(api: Server) -> None:
    with api.client("submitter") as client:
        client.post("/api/v1/sweeps", json={
            "name": "http", "base": TRAIN, "grid": {"seed": [0, 1]}}).raise_for_status()
    with api.client("worker") as client:
        lease = _claim(client, 10**6, device_memory_mb=DEVICE_MB)
        assert lease is not None and _complete(client, lease, 2345).status_code == 200
    shape, formula = _shape_and_formula(lease["job"]["config"])
    env = project_env(TENSLORA_API_URL=api.url, TENSLORA_TOKEN=api.tokens["admin"])
    listed = _cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(shape)]
    assert row.split()[1:5] == ["2345", "-", str(formula), "1"]
    refused = _cli({**env, "TENSLORA_TOKEN": api.tokens["worker"]}, "reset", shape)
    assert refused.returncode == 1 and "needs the role" in refused.stderr
    env.pop("TENSLORA_API_URL")
    reset = _cli(env, "reset", shape, "--url", api.url)
    assert reset.returncode == 0, reset.stderr
    assert f"reset {shape}: 1 queued jobs now estimated at {formula} MiB" in reset.stdout
    assert _queued_estimates(api, lease["job"]["sweep_id"]) == {formula}
