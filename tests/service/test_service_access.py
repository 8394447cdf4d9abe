"""Who may do what, against the real server on SQLite and Postgres: token listing and revocation,
sweep owners, lease owners."""

from __future__ import annotations

import subprocess
import sys

import httpx

from launch.processes import REPO, project_env
from tests.service.conftest import Server

SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}


def mint(api: Server, role: str, name: str) -> tuple[int, str]:
    """A token minted over the API by the admin token: (id, raw token)."""
    with api.client("admin") as admin:
        created = admin.post("/api/v1/tokens", json={"role": role, "name": name})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["token"]


def as_token(api: Server, raw: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=30,
                        headers={"Authorization": f"Bearer {raw}"})


def run_cli(api: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
        env=project_env(TENSLORA_DATABASE_URL=api.database_url), timeout=120,
    )


def test_token_list_shows_names_roles_creator_and_last_use_never_secrets(api: Server) -> None:
    token_id, raw = mint(api, "submitter", "listed-laptop")
    with as_token(api, raw) as client:
        assert client.get("/api/v1/sweeps").status_code == 200
    with api.client("admin") as admin:
        listed = admin.get("/api/v1/tokens")
    assert listed.status_code == 200
    (record,) = [t for t in listed.json()["items"] if t["id"] == token_id]
    assert record["role"] == "submitter" and record["created_by"] == "test admin"
    assert record["last_used_at"] is not None and record["revoked_at"] is None
    assert set(record) == {"id", "name", "role", "created_at", "last_used_at", "created_by",
                           "revoked_at"}
    assert raw not in listed.text
    for role in ("submitter", "worker"):
        with api.client(role) as client:
            assert client.get("/api/v1/tokens").status_code == 403
    shown = run_cli(api, "token", "list")
    assert shown.returncode == 0, shown.stderr
    (line,) = [row for row in shown.stdout.splitlines() if "listed-laptop" in row]
    assert "submitter" in line and "test admin" in line and "never" not in line.split()[-1]
    assert raw not in shown.stdout


def test_revoked_token_is_refused_at_once_by_the_server_that_revoked_it(api: Server) -> None:
    token_id, raw = mint(api, "admin", "stolen-admin")
    with as_token(api, raw) as stolen:
        assert stolen.get("/api/v1/sweeps").status_code == 200  # now in the server's cache
        with api.client("admin") as admin:
            revoked = admin.delete(f"/api/v1/tokens/{token_id}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
            assert admin.delete("/api/v1/tokens/999999").status_code == 404
        assert stolen.get("/api/v1/sweeps").status_code == 401
        minted = stolen.post("/api/v1/tokens", json={"role": "admin", "name": "backdoor"})
        assert minted.status_code == 401
    with api.client("admin") as admin:
        names = [t["name"] for t in admin.get("/api/v1/tokens").json()["items"]]
        every = admin.get("/api/v1/tokens", params={"include_revoked": "true"}).json()["items"]
    assert "stolen-admin" not in names and "backdoor" not in names
    assert any(t["id"] == token_id and t["revoked_at"] for t in every)


def test_token_revoked_on_the_host_cannot_mint_even_while_cached(api: Server) -> None:
    """`tenslora token revoke` writes the database only; admin calls always check it."""
    token_id, raw = mint(api, "admin", "host-revoked")
    with as_token(api, raw) as cached:
        assert cached.get("/api/v1/tokens").status_code == 200
        done = run_cli(api, "token", "revoke", "host-revoked")
        assert done.returncode == 0 and f"id {token_id}" in done.stdout, done.stderr
        assert cached.post("/api/v1/tokens", json={"role": "admin", "name": "x"}).status_code == 401
        assert cached.delete(f"/api/v1/tokens/{token_id}").status_code == 401
    again = run_cli(api, "token", "revoke", "host-revoked")
    assert again.returncode == 2 and "no live token" in again.stderr


def test_revoke_by_an_ambiguous_name_asks_for_the_id(api: Server) -> None:
    mint(api, "worker", "twin")
    mint(api, "worker", "twin")
    done = run_cli(api, "token", "revoke", "twin")
    assert done.returncode == 2 and "give the id" in done.stderr


def test_a_submitter_cancels_only_its_own_sweeps_an_admin_any(api: Server) -> None:
    _, other = mint(api, "submitter", "other-submitter")
    with api.client("submitter") as owner:
        mine = owner.post("/api/v1/sweeps", json={"name": "mine", "base": SYNTHETIC}).json()
        theirs_too = owner.post("/api/v1/sweeps", json={"name": "b", "base": SYNTHETIC}).json()
    with as_token(api, other) as intruder:
        refused = intruder.post(f"/api/v1/sweeps/{mine['id']}/cancel")
        assert refused.status_code == 403 and "another token" in refused.json()["detail"]
    with api.client("admin") as admin:
        assert admin.get(f"/api/v1/sweeps/{mine['id']}").json()["status"] == "queued"
        assert admin.post(f"/api/v1/sweeps/{theirs_too['id']}/cancel").status_code == 200
    with api.client("submitter") as owner:
        cancelled = owner.post(f"/api/v1/sweeps/{mine['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_a_lease_answers_only_the_token_that_claimed_it(api: Server) -> None:
    _, thief_token = mint(api, "worker", "other-gpu-host")
    with api.client("submitter") as submitter:
        submitted = submitter.post("/api/v1/sweeps", json={"name": "leases", "base": SYNTHETIC})
        assert submitted.status_code == 201
    with api.client("worker") as worker:
        lease = worker.post("/api/v1/jobs/claim",
                            json={"worker_id": "w1", "free_memory_mb": 10_000}).json()
    job_id, lease_id = lease["job"]["id"], lease["lease_id"]
    calls = {
        "heartbeat": {"lease_id": lease_id},
        "metrics": {"lease_id": lease_id, "points": [{"step": 0, "name": "loss", "value": 1.0}]},
        "complete": {"lease_id": lease_id, "result": {"accuracy": 0.0}},
        "fail": {"lease_id": lease_id, "error": "sabotage"},
        "release": {"lease_id": lease_id},
    }
    for client in (as_token(api, thief_token), api.client("admin")):
        with client:
            for call, body in calls.items():
                answer = client.post(f"/api/v1/jobs/{job_id}/{call}", json=body)
                assert answer.status_code == 403, (call, answer.text)
    with api.client("worker") as worker:
        assert worker.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
        assert worker.post(f"/api/v1/jobs/{job_id}/heartbeat", json=calls["heartbeat"]).json()[
            "cancelled"] is False
        done = worker.post(f"/api/v1/jobs/{job_id}/complete", json=calls["complete"])
        assert done.status_code == 200 and done.json()["status"] == "succeeded"
