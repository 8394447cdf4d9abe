"""Hostile input against the real server on SQLite and Postgres: whatever a client sends, the
answer is a 4xx naming the field, nothing is stored, and the queue keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.service.conftest import Server

SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
SURROGATE = "\udc00"  # valid JSON ("\\udc00"), not valid Unicode


def post(api: Server, role: str, path: str, body: Any) -> httpx.Response:
    """``body`` as JSON the way Python writes it (lone surrogates escaped as ``\\udc00``)."""
    return post_text(api, role, path, json.dumps(body))


def post_text(api: Server, role: str, path: str, text: str) -> httpx.Response:
    with api.client(role) as client:
        return client.post(path, content=text.encode(),
                           headers={"Content-Type": "application/json"})


def refused_field(response: httpx.Response) -> list[Any]:
    """The ``loc`` of a 422's first error, after checking it is one."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    return detail[0]["loc"] if isinstance(detail, list) else detail


def sweep_names(api: Server) -> list[str]:
    with api.client("admin") as client:
        return [s["name"] for s in client.get("/api/v1/sweeps", params={"limit": 1000})
                .json()["items"]]


def the_queue_still_serves(api: Server) -> None:
    with api.client("worker") as worker:
        claim = worker.post("/api/v1/jobs/claim", json={"worker_id": "w", "free_memory_mb": 10})
        assert claim.status_code in (200, 204), claim.text
        assert worker.get("/api/v1/jobs").status_code == 200


def lease(api: Server, **base: Any) -> dict[str, Any]:
    """A running job of a fresh one-job sweep (its id and lease id)."""
    sweep = post(api, "submitter", "/api/v1/sweeps",
                 {"name": "input", "base": {**SYNTHETIC, **base}})
    assert sweep.status_code == 201, sweep.text
    with api.client("admin") as admin:
        (job,) = admin.get("/api/v1/jobs", params={"sweep_id": sweep.json()["id"]}).json()["items"]
    claim = post(api, "worker", "/api/v1/jobs/claim",
                 {"worker_id": "w", "free_memory_mb": 10_000, "job_id": job["id"]})
    assert claim.status_code == 200, claim.text
    return {"id": job["id"], "lease_id": claim.json()["lease_id"]}


def test_a_lone_surrogate_in_a_tag_is_refused_and_the_queue_keeps_serving(api: Server) -> None:
    """The HIGH bug: SQLite stored it, then every claim, job list and sweep page answered 500."""
    before = sweep_names(api)
    answer = post(api, "submitter", "/api/v1/sweeps",
                  {"name": "poison", "base": {**SYNTHETIC, "tag": SURROGATE}})
    assert refused_field(answer) == ["body", "base", "tag"]
    assert "surrogate" in answer.json()["detail"][0]["msg"]
    assert sweep_names(api) == before
    the_queue_still_serves(api)


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/v1/sweeps", {"name": "n\x00ul", "base": SYNTHETIC}, ["body", "name"]),
        ("/api/v1/sweeps", {"name": "g", "base": SYNTHETIC, "grid": {"seed": [1, SURROGATE]}},
         ["body", "grid", "seed", 1]),
        ("/api/v1/sweeps", {"name": "k", "base": {**SYNTHETIC, "outcome": {SURROGATE: 1}}},
         ["body", "base", "outcome", SURROGATE]),
        ("/api/v1/jobs/claim", {"worker_id": "w" + SURROGATE, "free_memory_mb": 1},
         ["body", "worker_id"]),
    ],
)
def test_invalid_text_at_any_depth_is_refused_naming_the_field(
    api: Server, path: str, body: dict[str, Any], loc: list[Any]
) -> None:
    role = "worker" if "claim" in path else "submitter"
    before = sweep_names(api)
    found = refused_field(post(api, role, path, body))
    assert found[:-1] == loc[:-1] and (found[-1] == loc[-1] or loc[-1] == SURROGATE)
    assert sweep_names(api) == before


def test_results_metrics_and_errors_are_checked_too(api: Server) -> None:
    job = lease(api)
    url = f"/api/v1/jobs/{job['id']}"
    lease_id = json.dumps(job["lease_id"])
    bad_results = [
        (json.dumps({"accuracy": SURROGATE}), ["body", "result", "accuracy"]),
        ('{"big": 1' + "0" * 400 + "}", ["body", "result", "big"]),
        ('{"nested": {"huge": 1e400}}', ["body", "result", "nested", "huge"]),
        ('{"many": -' + "9" * 5000 + "}", ["body", "result", "many"]),
    ]
    for result, loc in bad_results:
        body = f'{{"lease_id": {lease_id}, "result": {result}}}'
        assert refused_field(post_text(api, "worker", f"{url}/complete", body)) == loc
    points = [{"step": 0, "name": "loss" + SURROGATE, "value": 1.0}]
    answer = post(api, "worker", f"{url}/metrics", {"lease_id": job["lease_id"], "points": points})
    assert refused_field(answer) == ["body", "points", 0, "name"]
    answer = post(api, "worker", f"{url}/fail", {"lease_id": job["lease_id"], "error": "\x00"})
    assert refused_field(answer) == ["body", "error"]
    with api.client("admin") as admin:
        stored = admin.get(url).json()
        assert stored["status"] == "running" and stored["result"] is None
        assert admin.get(f"{url}/metrics").json()["points"] == []


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return value


def test_deep_documents_are_refused(api: Server) -> None:
    # 50,000 levels: past Python's recursion limit, within TENSLORA_MAX_JSON_VALUES (100,000).
    for depth in (33, 600, 50_000):
        text = '{"name": "deep", "base": ' + "[" * depth + "]" * depth + "}"
        answer = post_text(api, "submitter", "/api/v1/sweeps", text)
        assert answer.status_code == 422, (depth, answer.text)
        assert "deeper than 32" in answer.json()["detail"][0]["msg"]
    job = lease(api)
    fine = {"lease_id": job["lease_id"], "result": {"x": _nested(20)}}
    assert post(api, "worker", f"/api/v1/jobs/{job['id']}/complete", fine).status_code == 200


def test_names_tags_results_and_metric_names_have_limits(api: Server) -> None:
    long = "x" * 201
    answer = post(api, "submitter", "/api/v1/sweeps", {"name": long, "base": SYNTHETIC})
    assert refused_field(answer) == ["body", "name"]
    answer = post(api, "submitter", "/api/v1/sweeps",
                  {"name": "tags", "base": SYNTHETIC, "grid": {"tag": ["ok", long]}})
    assert answer.status_code == 422 and "tag" in answer.json()["detail"]
    assert "at most 200 characters" in answer.json()["detail"]

    job = lease(api)
    url = f"/api/v1/jobs/{job['id']}"
    too_many = {f"m{i}": i for i in range(1001)}
    answer = post(api, "worker", f"{url}/complete", {"lease_id": job["lease_id"],
                                                     "result": too_many})
    assert answer.status_code == 422 and "at most 1,000 entries" in answer.json()["detail"]
    nested = {"a": {f"m{i}": i for i in range(600)}, "b": {f"m{i}": i for i in range(600)}}
    answer = post(api, "worker", f"{url}/complete", {"lease_id": job["lease_id"],
                                                     "result": nested})
    assert answer.status_code == 422 and "at most 1,000 entries" in answer.json()["detail"]
    answer = post(api, "worker", f"{url}/complete", {"lease_id": job["lease_id"],
                                                     "result": {long: 1.0}})
    assert answer.status_code == 422 and "at most 200 characters" in answer.json()["detail"]
    points = [{"step": 0, "name": long, "value": 1.0}]
    answer = post(api, "worker", f"{url}/metrics", {"lease_id": job["lease_id"], "points": points})
    assert refused_field(answer) == ["body", "points", 0, "name"]
    done = post(api, "worker", f"{url}/complete", {"lease_id": job["lease_id"],
                                                   "result": {f"m{i}": i for i in range(1000)}})
    assert done.status_code == 200 and len(done.json()["result"]) == 1000


def test_a_long_error_text_is_kept_truncated(api: Server) -> None:
    job = lease(api)
    error = "Traceback (most recent call last):\n" + "é" * 100_000
    answer = post(api, "worker", f"/api/v1/jobs/{job['id']}/fail",
                  {"lease_id": job["lease_id"], "error": error})
    assert answer.status_code == 200
    stored = answer.json()["error"]
    assert stored.startswith("Traceback") and stored.endswith("more bytes truncated]")
    assert len(stored.encode()) <= 64 * 1024


def test_a_stored_surrogate_fails_no_claim_list_or_page(api: Server) -> None:
    """A row SQLite stored before the API refused surrogates: every response still answers,
    the text carrying U+FFFD; the job is handed out instead of failing every claim."""
    from scheduler.db import Database
    from scheduler.errors import InvalidInput
    from scheduler.sweeps import create_sweep

    database = Database(api.database_url)
    try:
        if not api.database_url.startswith("sqlite"):
            # Postgres cannot hold such text at all: the old rows exist only on SQLite.
            with pytest.raises(InvalidInput), database.session() as session:
                create_sweep(session, "legacy", {**SYNTHETIC, "tag": SURROGATE})
            assert "legacy" not in sweep_names(api)
            return
        with database.session() as session:
            view = create_sweep(session, "legacy", {**SYNTHETIC, "tag": SURROGATE})
    finally:
        database.dispose()
    with api.client("worker") as worker:
        claim = worker.post("/api/v1/jobs/claim",
                            json={"worker_id": "w", "free_memory_mb": 10_000})
        assert claim.status_code == 200, claim.text
        assert claim.json()["job"]["config"]["tag"] == "\ufffd"
        listed = worker.get("/api/v1/jobs", params={"sweep_id": view.sweep.id})
        assert listed.status_code == 200 and listed.json()["items"][0]["config"]["tag"] == "\ufffd"
    login = httpx.post(f"{api.url}/login", data={"token": api.tokens["admin"], "next": "/"})
    page = httpx.get(f"{api.url}/sweeps/{view.sweep.id}", cookies=login.cookies)
    assert page.status_code == 200 and "legacy" in page.text


def test_json_without_a_content_type_is_checked_too(api: Server) -> None:
    """FastAPI reads a body without Content-Type as JSON: no way around the check."""
    body = json.dumps({"name": "sneaky", "base": {**SYNTHETIC, "tag": SURROGATE}}).encode()
    with api.client("submitter") as client:
        request = client.build_request("POST", "/api/v1/sweeps", content=body)
        assert "content-type" not in request.headers
        answer = client.send(request)
    assert refused_field(answer) == ["body", "base", "tag"]
    assert "sneaky" not in sweep_names(api)
