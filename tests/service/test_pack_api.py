"""POST /api/v1/jobs/claim-pack against the real server, on SQLite and on Postgres."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import Server
from tests.service.test_service_api import submit

PACKABLE: dict[str, Any] = {
    "kind": "train",
    "task": "synthetic_text",
    "backbone": "minilm",
    "train": {"max_steps": 3, "batch_size": 4, "max_length": 16},
}


def _claim_pack(api: Server, max_jobs: int, free_mb: int = 10**6) -> Any:
    with api.client("worker") as client:
        return client.post(
            "/api/v1/jobs/claim-pack",
            json={"worker_id": "packer", "device": "cuda:0", "free_memory_mb": free_mb,
                  "max_jobs": max_jobs},
        )


def test_claim_pack_leases_jobs_of_one_pack_key_each_with_its_own_lease(api: Server) -> None:
    methods = [{"adapter": {"method": m}} for m in ("lora", "qkv", "depth", "att")]
    sweep = submit(api, {"name": "pack", "base": PACKABLE, "configs": methods})
    response = _claim_pack(api, 3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pack_id"] and len(body["claims"]) == 3
    assert len({claim["lease_id"] for claim in body["claims"]}) == 3
    assert {claim["job"]["pack_id"] for claim in body["claims"]} == {body["pack_id"]}
    with api.client("admin") as client:
        jobs = client.get("/api/v1/jobs", params={"sweep_id": sweep["id"]}).json()["items"]
    packed = [job for job in jobs if job["pack_id"] == body["pack_id"]]
    assert len(packed) == 3 and all(job["status"] == "running" for job in packed)
    assert len({job["pack_key"] for job in jobs}) == 1
    lone = _claim_pack(api, 3).json()
    assert lone["pack_id"] is None and len(lone["claims"]) == 1
    assert _claim_pack(api, 3).status_code == 204


def test_claim_pack_refuses_bad_requests_with_a_detail(api: Server) -> None:
    for bad in ({"max_jobs": 0}, {"max_jobs": 10**6}, {"max_jobs": "many"}):
        with api.client("worker") as client:
            response = client.post(
                "/api/v1/jobs/claim-pack",
                json={"worker_id": "w", "free_memory_mb": 1, **bad},
            )
        assert response.status_code == 422 and "max_jobs" in response.text
    with api.client("submitter") as client:
        denied = client.post(
            "/api/v1/jobs/claim-pack", json={"worker_id": "w", "free_memory_mb": 1, "max_jobs": 2}
        )
    assert denied.status_code == 403
