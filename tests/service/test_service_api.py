"""The HTTP API against the real server, on SQLite and on Postgres."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from launch.processes import REPO, project_env, wait_for
from scheduler.db import Database
from scheduler.queue import Claim, claim_job
from tests.service.conftest import Server

SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
TRAIN = {"kind": "train", "task": "cola", "backbone": "minilm"}


def submit(api: Server, body: dict[str, Any]) -> dict[str, Any]:
    with api.client("submitter") as client:
        response = client.post("/api/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def claim(client: httpx.Client, worker: str = "w1", free_mb: int = 10_000) -> dict | None:
    response = client.post(
        "/api/v1/jobs/claim",
        json={"worker_id": worker, "device": "cuda:0", "free_memory_mb": free_mb},
    )
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def expired_claim(api: Server, worker: str, leases_ago: int = 1) -> Claim:
    """A claim made (through the scheduler, on the server's database) ``leases_ago`` lease
    lengths (+1 s each) back: its lease has expired by now, with no sleeping. The claim reaps,
    at its own ``now=``, the leases that had expired by then."""
    long_ago = datetime.now(UTC) - leases_ago * timedelta(seconds=api.lease_seconds + 1)
    database = Database(api.database_url)
    try:
        with database.session() as session:
            lease = claim_job(session, worker, "cuda:0", 10_000, api.lease_seconds, 3, now=long_ago)
    finally:
        database.dispose()
    assert lease is not None
    return lease


def test_claim_hands_each_job_to_exactly_one_of_8_concurrent_workers(api: Server) -> None:
    sweep = submit(api, {"name": "race", "base": SYNTHETIC, "grid": {"seed": list(range(48))}})
    claimed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(worker: str) -> None:
        with api.client("worker") as client:
            for _ in range(200):  # bounded: 48 jobs shared by 8 workers
                lease = claim(client, worker)
                if lease is None:
                    return
                with lock:
                    claimed.append(lease["job"]["id"])
                done = client.post(
                    f"/api/v1/jobs/{lease['job']['id']}/complete",
                    json={"lease_id": lease["lease_id"], "result": {"accuracy": 1.0}},
                )
                if done.status_code != 200:
                    errors.append(done.text)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(claimed) == 48 and len(set(claimed)) == 48
    with api.client() as client:
        shown = client.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert shown["counts"]["succeeded"] == 48 and shown["status"] == "finished"


def test_expired_lease_requeues_with_next_attempt_and_stale_lease_gets_409(api: Server) -> None:
    submit(api, {"name": "lease", "base": SYNTHETIC})
    first = expired_claim(api, "dead-worker")
    assert first.job.attempt == 1
    job_id = first.job.id
    with api.client("worker") as client:
        stale = client.post(f"/api/v1/jobs/{job_id}/heartbeat", json={"lease_id": first.lease_id})
        assert stale.status_code == 409 and "lease" in stale.json()["detail"]
        # Claims reap at most once a second per server process; the reaper runs every 0.5 s.
        second = wait_for("the job back in the queue", lambda: claim(client, "live-worker"), 10)
        assert second is not None and second["job"]["id"] == job_id
        assert second["job"]["attempt"] == 2 and second["lease_id"] != first.lease_id
        late = client.post(
            f"/api/v1/jobs/{job_id}/complete", json={"lease_id": first.lease_id, "result": {}}
        )
        assert late.status_code == 409
        body = {"lease_id": second["lease_id"], "result": {"accuracy": 0.5}}
        done = client.post(f"/api/v1/jobs/{job_id}/complete", json=body)
        assert done.status_code == 200 and done.json()["status"] == "succeeded"
        again = client.post(
            f"/api/v1/jobs/{job_id}/complete",
            json={"lease_id": second["lease_id"], "result": {"accuracy": 0.9}},
        )
        assert again.status_code == 200 and again.json()["result"] == {"accuracy": 0.5}


def test_job_fails_after_max_attempts_of_expired_leases(api: Server) -> None:
    submit(api, {"name": "doomed", "base": SYNTHETIC})
    for attempt in (1, 2, 3):  # each claim first reaps the expired lease of the one before
        lease = expired_claim(api, "flaky", leases_ago=4 - attempt)
        assert lease.job.attempt == attempt
    with api.client("worker") as client:

        def failed() -> dict[str, Any] | None:
            job = client.get(f"/api/v1/jobs/{lease.job.id}").json()
            return job if job["status"] == "failed" else None

        # The server's background reaper fails it without any claim.
        job = wait_for("the reaper to fail the job", failed, timeout=10)
        assert job["status"] == "failed" and "expired" in job["error"]


def test_claim_hands_out_only_jobs_whose_memory_fits_highest_priority_first(api: Server) -> None:
    low = submit(api, {"name": "low", "base": SYNTHETIC, "grid": {"seed": [0, 1]}})
    submit(api, {"name": "big", "base": {**SYNTHETIC, "memory_mb": 5000}, "priority": 9})
    high = submit(api, {"name": "high", "base": {**SYNTHETIC, "memory_mb": 800}, "priority": 5})
    with api.client("worker") as client:
        assert claim(client, free_mb=50) is None
        first = claim(client, free_mb=1000)
        assert first is not None and first["job"]["sweep_id"] == high["id"]
        second, third = claim(client, free_mb=1000), claim(client, free_mb=1000)
        assert second is not None and third is not None
        assert second["job"]["sweep_id"] == third["job"]["sweep_id"] == low["id"]
        assert second["job"]["id"] < third["job"]["id"]  # same priority: oldest first
        assert claim(client, free_mb=1000) is None
        big = claim(client, free_mb=6000)
        assert big is not None and big["job"]["config"]["memory_mb"] == 5000
        running = client.get("/api/v1/jobs", params={"status": "running", "limit": 2}).json()
        assert running["total"] == 4 and len(running["items"]) == 2


def test_train_estimate_is_replaced_by_observed_peak_of_same_shape(api: Server) -> None:
    sweep = submit(api, {"name": "shape", "base": TRAIN, "grid": {"seed": [0, 1]}})
    with api.client("worker") as client:
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep["id"]}).json()["items"]
        formula = jobs[0]["memory_estimate_mb"]
        assert formula > 500 and jobs[1]["memory_estimate_mb"] == formula
        lease = claim(client, free_mb=formula)
        assert lease is not None
        client.post(
            f"/api/v1/jobs/{lease['job']['id']}/complete",
            json={"lease_id": lease["lease_id"], "result": {"peak_memory_mb": 321}},
        ).raise_for_status()
        other = client.get(f"/api/v1/jobs/{jobs[1]['id']}").json()
    assert other["memory_estimate_mb"] == 321


def test_results_give_mean_and_sample_std_per_group(api: Server) -> None:
    scores = {"lora": [0.5, 0.6, 0.7], "qkv": [0.8, 0.9]}
    configs = [
        {"tag": tag, "seed": seed, "outcome": {"accuracy": value}}
        for tag, values in scores.items()
        for seed, value in enumerate(values)
    ]
    sweep = submit(api, {"name": "results", "base": SYNTHETIC, "configs": configs})
    with api.client("worker") as client:
        for _ in range(len(configs)):
            lease = claim(client)
            assert lease is not None
            outcome = lease["job"]["config"]["outcome"]
            client.post(
                f"/api/v1/jobs/{lease['job']['id']}/complete",
                json={"lease_id": lease["lease_id"], "result": outcome},
            ).raise_for_status()
        response = client.get(
            f"/api/v1/sweeps/{sweep['id']}/results", params={"group_by": ["tag", "kind"]}
        )
    assert response.status_code == 200, response.text
    rows = {row["group"]["tag"]: row for row in response.json()["rows"]}
    assert set(rows) == {"lora", "qkv"}
    for tag, values in scores.items():
        summary = rows[tag]["metrics"]["accuracy"]
        assert rows[tag]["n"] == len(values) and rows[tag]["group"]["kind"] == "synthetic"
        assert abs(summary["mean"] - statistics.mean(values)) < 1e-9
        assert abs(summary["std"] - statistics.stdev(values)) < 1e-9
        assert summary["min"] == min(values) and summary["max"] == max(values)


BAD_SWEEPS = [
    (
        {"name": "x", "base": TRAIN, "grid": {"seed": list(range(101)), "optim.lr": [0.1] * 100}},
        "10,000",
    ),
    ({"name": "x", "base": TRAIN, "grid": {"seed": []}}, "seed"),
    ({"name": "x", "base": {**TRAIN, "optimizer": {}}}, "optimizer"),
    ({"name": "x", "base": TRAIN, "configs": [{}, {"adapter": {"method": "qkvz"}}]}, "configs[1]"),
    (
        {
            "name": "x",
            "base": TRAIN,
            "grid": {"adapter.ranks": [4, [4, 4]]},
            "configs": [{"adapter": {"method": "qkv"}}],
        },
        "adapter.ranks=[4, 4]",
    ),
    ({"name": "x", "base": {**TRAIN, "adapter": {"method": "depth", "ranks": 0}}}, "ranks"),
    ({"name": "x", "base": TRAIN, "grid": {"optim.learning_rate": [0.1]}}, "learning_rate"),
    ({"name": "x", "base": TRAIN, "extra": 1}, "extra"),
]


def test_bad_sweeps_get_422_saying_what_and_where_and_store_nothing(api: Server) -> None:
    with api.client("submitter") as client:
        before = client.get("/api/v1/sweeps").json()["total"]
        jobs_before = client.get("/api/v1/jobs").json()["total"]
        for body, expected in BAD_SWEEPS:
            response = client.post("/api/v1/sweeps", json=body)
            assert response.status_code == 422, (body, response.text)
            assert expected in str(response.json()["detail"]), (expected, response.json())
        bad_group = client.get("/api/v1/sweeps/1/results", params={"group_by": ["tag", "a..b"]})
        assert bad_group.status_code == 422
        assert bad_group.json()["detail"][0]["loc"] == ["query", "group_by", 1]
        assert client.get("/api/v1/sweeps/999999/results").status_code == 404
        assert client.get("/api/v1/jobs", params={"status": "sleeping"}).status_code == 422
        assert client.get("/api/v1/sweeps").json()["total"] == before
        assert client.get("/api/v1/jobs").json()["total"] == jobs_before


def test_duplicate_specs_in_one_sweep_are_stored_once(api: Server) -> None:
    sweep = submit(
        api, {"name": "dupes", "base": TRAIN, "configs": [{"seed": 1}, {}, {"seed": 1}, {}]}
    )
    assert sweep["n_jobs"] == 2


def test_tokens_401_without_or_with_unknown_token_and_403_for_wrong_role(api: Server) -> None:
    body = {"name": "auth", "base": SYNTHETIC}
    with api.client(None) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/api/v1/sweeps").status_code == 401
        unknown = anonymous.get("/api/v1/sweeps", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401
    with api.client("worker") as worker:
        assert worker.post("/api/v1/sweeps", json=body).status_code == 403
    with api.client("submitter") as submitter:
        denied = submitter.post("/api/v1/jobs/claim", json={"worker_id": "w", "free_memory_mb": 1})
        assert denied.status_code == 403 and "worker" in denied.json()["detail"]
        assert submitter.get("/api/v1/sweeps").status_code == 200
        mint = {"role": "worker", "name": "gpu-9"}
        assert submitter.post("/api/v1/tokens", json=mint).status_code == 403
    with api.client("admin") as admin:
        minted = admin.post("/api/v1/tokens", json=mint)
        assert minted.status_code == 201
    with api.client(None) as fresh:
        headers = {"Authorization": f"Bearer {minted.json()['token']}"}
        assert fresh.post(
            "/api/v1/jobs/claim", json={"worker_id": "w", "free_memory_mb": 0}, headers=headers
        ).status_code in (200, 204)


def test_cancel_stops_running_job_at_heartbeat_and_release_requeues(api: Server) -> None:
    sweep = submit(api, {"name": "cancel", "base": SYNTHETIC, "grid": {"seed": [0, 1, 2]}})
    with api.client("worker") as worker:
        running = claim(worker, "w-cancel")
        released = claim(worker, "w-drain")
        assert running is not None and released is not None
        back = worker.post(
            f"/api/v1/jobs/{released['job']['id']}/release",
            json={"lease_id": released["lease_id"]},
        )
        assert back.status_code == 200
        assert back.json()["status"] == "queued" and back.json()["attempt"] == 1
        workers = {w["worker_id"]: w for w in worker.get("/api/v1/workers").json()["items"]}
        assert workers["w-cancel"]["running_jobs"] == 1 and workers["w-drain"]["running_jobs"] == 0
        with api.client("submitter") as submitter:
            cancelled = submitter.post(f"/api/v1/sweeps/{sweep['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["counts"]["queued"] == 0
        beat = worker.post(
            f"/api/v1/jobs/{running['job']['id']}/heartbeat",
            json={"lease_id": running["lease_id"]},
        )
        assert beat.status_code == 200 and beat.json()["cancelled"] is True
        assert claim(worker) is None


def test_metrics_stream_in_and_read_back_by_name(api: Server) -> None:
    submit(api, {"name": "curves", "base": SYNTHETIC})
    with api.client("worker") as client:
        lease = claim(client)
        assert lease is not None
        job_id = lease["job"]["id"]
        points = [
            {"step": s, "name": n, "value": v}
            for s, n, v in [(1, "loss", 0.9), (2, "loss", 0.7), (1, "lr", 1e-4)]
        ]
        stored = client.post(
            f"/api/v1/jobs/{job_id}/metrics", json={"lease_id": lease["lease_id"], "points": points}
        )
        assert stored.status_code == 200 and stored.json()["stored"] == 3
        wrong = client.post(
            f"/api/v1/jobs/{job_id}/metrics", json={"lease_id": "not-it", "points": points}
        )
        assert wrong.status_code == 409
        loss = client.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "loss"}).json()
    assert [(p["step"], p["value"]) for p in loss["points"]] == [(1, 0.9), (2, 0.7)]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_token_create_prints_a_working_token_on_its_last_line(api: Server) -> None:
    done = run_cli(
        "token",
        "create",
        "--role",
        "worker",
        "--name",
        "gpu-7",
        TENSLORA_DATABASE_URL=api.database_url,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api.url, headers=headers) as client:
        assert client.get("/api/v1/workers").status_code == 200
        assert (
            client.post("/api/v1/sweeps", json={"name": "n", "base": SYNTHETIC}).status_code == 403
        )


def test_cli_submits_over_http_and_prints_results_as_json(api: Server, tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "base: {kind: synthetic, duration_s: 0, outcome: {accuracy: 0.25}}\n"
        "configs: [{tag: a}, {tag: b}]\n"
    )
    auth = {"TENSLORA_API_URL": api.url, "TENSLORA_TOKEN": api.tokens["submitter"]}
    submitted = run_cli("sweep", "submit", str(sweep_file), **auth)
    assert submitted.returncode == 0, submitted.stderr
    assert "'sweep'" in submitted.stdout and "2 jobs" in submitted.stdout
    sweep_id = int(submitted.stdout.split()[1])
    with api.client("worker") as client:
        for _ in range(2):
            lease = claim(client)
            assert lease is not None
            client.post(
                f"/api/v1/jobs/{lease['job']['id']}/complete",
                json={"lease_id": lease["lease_id"], "result": {"accuracy": 0.25}},
            ).raise_for_status()
    shown = run_cli("results", str(sweep_id), "--group-by", "tag", "--format", "json", **auth)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["rows"]
    assert [row["group"]["tag"] for row in rows] == ["a", "b"]
    assert rows[0]["metrics"]["accuracy"]["mean"] == 0.25
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("base: {kind: train, task: cola, backbone: minilm, adapter: {ranks: -1}}")
    refused = run_cli("sweep", "submit", str(bad_file), **auth)
    assert refused.returncode == 2 and "ranks" in refused.stderr


def test_non_finite_numbers_get_422_in_requests_and_null_in_metrics(api: Server) -> None:
    with api.client("admin") as client:
        raw = b'{"worker_id": "w", "free_memory_mb": NaN}'
        refused = client.post(
            "/api/v1/jobs/claim", content=raw, headers={"content-type": "application/json"}
        )
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1]
        sweep = b'{"name": "n", "base": {"kind": "synthetic", "duration_s": Infinity}}'
        bad_sweep = client.post(
            "/api/v1/sweeps", content=sweep, headers={"content-type": "application/json"}
        )
        assert bad_sweep.status_code == 422 and "finite" in bad_sweep.json()["detail"]
        submit(api, {"name": "nan", "base": SYNTHETIC})
        lease = claim(client)
        assert lease is not None
        points = b'[{"step": 1, "name": "loss", "value": NaN}]'
        body = b'{"lease_id": "%s", "points": %s}' % (lease["lease_id"].encode(), points)
        stored = client.post(
            f"/api/v1/jobs/{lease['job']['id']}/metrics",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert stored.status_code == 200
        read = client.get(f"/api/v1/jobs/{lease['job']['id']}/metrics").json()["points"]
    assert read == [{"step": 1, "name": "loss", "value": None}]
