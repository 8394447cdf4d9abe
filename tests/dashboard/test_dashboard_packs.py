"""The job page names the pack a job ran in and links the pack's other jobs."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from launch.server import create_token
from scheduler.settings import Settings


def test_the_job_page_links_the_other_jobs_of_its_pack(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with TestClient(create_app(Settings(database_url=url, dashboard_public=True))) as client:
        as_admin = {"Authorization": f"Bearer {create_token(url, 'admin', 'alice')}"}
        as_worker = {"Authorization": f"Bearer {create_token(url, 'worker', 'w1')}"}
        base = {"kind": "train", "task": "synthetic_text", "backbone": "minilm",
                "train": {"max_steps": 2, "batch_size": 4, "max_length": 16}}
        configs = [{"adapter": {"method": m}} for m in ("lora", "qkv", "depth")]
        client.post("/api/v1/sweeps", headers=as_admin,
                    json={"name": "packs", "base": base, "configs": configs}).raise_for_status()
        pack = client.post("/api/v1/jobs/claim-pack", headers=as_worker, json={
            "worker_id": "w1", "free_memory_mb": 10**6, "max_jobs": 2}).json()
        first, second = (claim["job"]["id"] for claim in pack["claims"])
        page = client.get(f"/jobs/{first}").text
        assert f"pack {pack['pack_id'][:8]}" in page
        assert f'href="/jobs/{second}"' in page and f'href="/jobs/{first}"' not in page
        listed = client.get("/api/v1/jobs", headers=as_admin,
                            params={"pack_id": pack["pack_id"]}).json()
        assert {job["id"] for job in listed["items"]} == {first, second}
        alone = client.get("/api/v1/jobs", headers=as_admin).json()["items"][-1]
        assert alone["pack_id"] is None and 'id="pack-jobs"' not in client.get(
            f"/jobs/{alone['id']}").text
