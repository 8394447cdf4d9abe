"""Trained adapters kept by the service: upload by the lease holder, download as a zip, on the
real server over SQLite and Postgres."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

import tenslora
from launch.processes import REPO, project_env, wait_for
from launch.server import sqlite_url
from scheduler.adapter_zip import ArchiveLimits, read_archive
from scheduler.artifacts import store_adapter
from scheduler.db import Database
from scheduler.queue import claim_job
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.metric_contract import (
    ADAPTER_ANALYSIS_FILE,
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
)
from tests.adapter_helpers import randomise, tiny_bert, token_batch
from tests.helpers.server import Service, start_service

MAX_ADAPTER_MB = 0.25
LEASE_SECONDS = 30.0
TRAIN = {"kind": "train", "task": "rotten_tomatoes", "backbone": "minilm"}
SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
LIMITS = ArchiveLimits(max_bytes=2**20, max_members=64, max_json_depth=32,
                       max_json_values=200_000)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The real server with a small adapter limit, on each backend."""
    folder = tmp_path_factory.mktemp(f"adapters-{request.param}")
    url = (sqlite_url(folder) if request.param == "sqlite"
           else request.getfixturevalue("postgres").fresh_database())
    running = start_service(folder, url, LEASE_SECONDS, TENSLORA_MAX_ADAPTER_MB=str(MAX_ADAPTER_MB),
                            TENSLORA_DASHBOARD_PUBLIC="1")
    try:
        yield running
    finally:
        running.stop()


def _claimed(service: Service, spec: dict[str, Any], name: str) -> dict[str, Any]:
    """A new one-job sweep of ``spec``, and that job claimed (the queue holds no other)."""
    with service.client("submitter") as client:
        client.post("/api/v1/sweeps", json={"name": name, "base": spec}).raise_for_status()
    with service.client("worker") as client:
        claim = client.post("/api/v1/jobs/claim",
                            json={"worker_id": name, "free_memory_mb": 10**6})
    assert claim.status_code == 200, claim.text
    return claim.json()


def _adapted_model() -> torch.nn.Module:
    model = tiny_bert()
    tenslora.apply_adapter(model, AdapterConfig("att_qkv", "tucker", [4, 3, 2, 3], seed=0),
                           train_head=True)
    randomise(model.tenslora_adapter.parameters())
    return model


def _zip_folder(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"adapter/{path.name}")  # a zipped folder, as `zip -r` makes
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _put(client: httpx.Client, job_id: int, lease_id: str, body: bytes) -> httpx.Response:
    return client.put(f"/api/v1/jobs/{job_id}/adapter", params={"lease_id": lease_id},
                      content=body, headers={"Content-Type": "application/zip"})


def _complete(client: httpx.Client, claim: dict[str, Any], result: dict[str, Any]) -> None:
    done = client.post(f"/api/v1/jobs/{claim['job']['id']}/complete",
                       json={"lease_id": claim["lease_id"], "result": result})
    assert done.status_code == 200, done.text


def test_an_uploaded_adapter_downloads_as_a_zip_that_reproduces_the_models_outputs(
    service: Service, tmp_path: Path
) -> None:
    model = _adapted_model()
    with torch.no_grad():
        expected = model(token_batch()).logits
    folder = tenslora.save_adapter(model, tmp_path / "saved")
    claim = _claimed(service, TRAIN, "roundtrip")
    job_id = claim["job"]["id"]
    with service.client("worker") as client:
        stored = _put(client, job_id, claim["lease_id"], _zip_folder(folder))
        assert stored.status_code == 200, stored.text
        assert stored.json()["attempt"] == 1 and stored.json()["job_id"] == job_id
        running = client.get(f"/api/v1/jobs/{job_id}/adapter")
        assert running.status_code == 404 and "running" in running.json()["detail"]
        _complete(client, claim, {"accuracy": 0.75})
    with service.client("submitter") as client:
        response = client.get(f"/api/v1/jobs/{job_id}/adapter")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"job-{job_id}-adapter.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == sorted([ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE])
        archive.extractall(tmp_path / "downloaded")
    fresh = tenslora.load_adapter(tiny_bert(), tmp_path / "downloaded")
    with torch.no_grad():
        assert torch.equal(fresh(token_batch()).logits, expected)


def test_get_adapter_is_404_for_unknown_synthetic_and_failed_jobs_and_401_without_token(
    service: Service,
) -> None:
    synthetic = _claimed(service, SYNTHETIC, "synthetic")
    failed = _claimed(service, TRAIN, "failing")
    with service.client("worker") as client:
        _complete(client, synthetic, {"accuracy": 1.0})
        client.post(f"/api/v1/jobs/{failed['job']['id']}/fail",
                    json={"lease_id": failed["lease_id"], "error": "boom"}).raise_for_status()
    with service.client("submitter") as client:
        for job_id, words in ((2**31 - 1, "does not exist"),
                              (synthetic["job"]["id"], "synthetic job"),
                              (failed["job"]["id"], "is failed")):
            response = client.get(f"/api/v1/jobs/{job_id}/adapter")
            assert response.status_code == 404 and words in response.json()["detail"]
    with service.client(None) as anonymous:
        assert anonymous.get(f"/api/v1/jobs/{failed['job']['id']}/adapter").status_code == 401
        put = _put(anonymous, failed["job"]["id"], failed["lease_id"], b"PK")
        assert put.status_code == 401
    with service.client("submitter") as reader:  # only a worker token uploads
        assert _put(reader, failed["job"]["id"], failed["lease_id"], b"PK").status_code == 403


def test_an_oversized_adapter_gets_413_saying_the_limit_and_the_result_is_still_stored(
    service: Service,
) -> None:
    claim = _claimed(service, TRAIN, "oversized")
    job_id = claim["job"]["id"]
    big = int(MAX_ADAPTER_MB * 2**20) + 1
    bomb = io.BytesIO()  # a small zip that unpacks past the limit
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ADAPTER_WEIGHTS_FILE, b"\0" * big)
        archive.writestr(ADAPTER_CONFIG_FILE, b'{"config": {}, "backbone": {}}')
    assert len(bomb.getvalue()) < big // 100
    with service.client("worker") as client:
        for body in (b"x" * big, bomb.getvalue()):
            refused = _put(client, job_id, claim["lease_id"], body)
            assert refused.status_code == 413, refused.text
            detail = refused.json()["detail"]
            assert "TENSLORA_MAX_ADAPTER_MB" in detail and "0.25 MiB" in detail
        _complete(client, claim, {"accuracy": 0.5})
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["result"] == {"accuracy": 0.5}
        missing = client.get(f"/api/v1/jobs/{job_id}/adapter")
        assert missing.status_code == 404 and "without an adapter" in missing.json()["detail"]


def test_uploads_that_are_not_an_adapter_or_not_the_lease_holders_are_refused(
    service: Service, tmp_path: Path
) -> None:
    claim = _claimed(service, TRAIN, "bad-uploads")
    job_id, lease = claim["job"]["id"], claim["lease_id"]
    folder = tenslora.save_adapter(_adapted_model(), tmp_path / "saved")
    no_config = io.BytesIO()
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.write(folder / ADAPTER_WEIGHTS_FILE, ADAPTER_WEIGHTS_FILE)
    swapped = io.BytesIO()
    with zipfile.ZipFile(swapped, "w") as archive:
        archive.write(folder / ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE)
        archive.write(folder / ADAPTER_CONFIG_FILE, ADAPTER_CONFIG_FILE)
    with service.client("worker") as client:
        for body, words in ((b"not a zip", "not a zip"),
                            (no_config.getvalue(), f"lacks {ADAPTER_CONFIG_FILE}"),
                            (swapped.getvalue(), "not a safetensors file")):
            refused = _put(client, job_id, lease, body)
            assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
        assert _put(client, job_id, "not-the-lease", _zip_folder(folder)).status_code == 409
        assert _put(client, 2**31 - 1, lease, _zip_folder(folder)).status_code == 404
        synthetic = _claimed(service, SYNTHETIC, "synthetic-upload")
        refused = _put(client, synthetic["job"]["id"], synthetic["lease_id"], _zip_folder(folder))
        assert refused.status_code == 422 and "only train jobs" in refused.json()["detail"]
        _complete(client, synthetic, {})
        _complete(client, claim, {})


def test_a_later_attempt_replaces_the_adapter_and_none_replaces_it_once_the_job_succeeded(
    service: Service, tmp_path: Path
) -> None:
    first_model, second_model, third_model = _adapted_model(), _adapted_model(), _adapted_model()
    randomise(second_model.tenslora_adapter.parameters(), seed=7)
    randomise(third_model.tenslora_adapter.parameters(), seed=8)
    first = _zip_folder(tenslora.save_adapter(first_model, tmp_path / "first"))
    second = _zip_folder(tenslora.save_adapter(second_model, tmp_path / "second"),
                         {ADAPTER_ANALYSIS_FILE: json.dumps(analysis_document()).encode()})
    third = _zip_folder(tenslora.save_adapter(third_model, tmp_path / "third"))
    with service.client("submitter") as client:
        client.post("/api/v1/sweeps", json={"name": "attempts", "base": TRAIN}).raise_for_status()
    # Attempt 1 claimed and uploaded a lease length ago, then its worker died.
    long_ago = datetime.now(UTC) - timedelta(seconds=LEASE_SECONDS + 1)
    database = Database(service.database_url, artifacts=service.artifacts)
    try:
        with database.session() as session:
            dead = claim_job(session, "dead", None, 10**6, LEASE_SECONDS, 3, now=long_ago)
            assert dead is not None
            store_adapter(session, dead.job.id, dead.lease_id, read_archive(first, LIMITS),
                          now=long_ago + timedelta(seconds=1))
    finally:
        database.dispose()
    with service.client("worker") as client:
        def next_claim() -> dict[str, Any] | None:
            answer = client.post("/api/v1/jobs/claim",
                                 json={"worker_id": "alive", "free_memory_mb": 10**6})
            return answer.json() if answer.status_code == 200 else None

        claim = wait_for("the expired job back in the queue", next_claim, 30)
        assert claim["job"]["id"] == dead.job.id and claim["job"]["attempt"] == 2
        assert _put(client, dead.job.id, dead.lease_id, second).status_code == 409
        stored = _put(client, dead.job.id, claim["lease_id"], second).json()
        assert stored["attempt"] == 2 and stored["analysis_note"] is None
        _complete(client, claim, {"accuracy": 0.6})
        # The lease holder cannot swap the served adapter after the result: not even a resend.
        for body in (third, second):
            swapped = _put(client, dead.job.id, claim["lease_id"], body)
            assert swapped.status_code == 409, swapped.text
            assert "never replaced" in swapped.json()["detail"]
        served = client.get(f"/api/v1/jobs/{dead.job.id}/adapter")
    assert served.status_code == 200
    assert served.content == read_archive(second, LIMITS).archive
    database = Database(service.database_url, artifacts=service.artifacts)
    try:
        with database.session(write=False) as session:
            from scheduler.artifacts import get_analysis

            kept = get_analysis(session, dead.job.id)
    finally:
        database.dispose()
    assert kept is not None  # NaN (an all-zero tensor's statistic) kept as null
    assert kept["constructions"][0]["summary"][0]["entropy_norm"] is None


def analysis_document(**changes: Any) -> dict[str, Any]:
    """A small analysis in the shape the job page reads (NaN where a tensor was all zero)."""
    row = {"mode": "Input", "size": 32, "entropy_norm": math.nan, "top1_energy": 1.0,
           "effective_rank": 1.0, "rank_kept": 1}
    construction = {"method": "att_qkv", "tucker_ranks": {"Input": 1}, "tucker_parameters": 40,
                    "summary": [row]}
    return {"method": "att_qkv", "energy_kept": 0.9, "adapter_parameters": 100,
            "constructions": [construction], **changes}


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--url", service.url,
         "--token", service.tokens["submitter"]],
        cwd=REPO, env=project_env(COLUMNS="200"), capture_output=True, text=True, timeout=180,
    )


def test_cli_downloads_a_jobs_adapter_and_analyses_its_modes_by_job_id(
    service: Service, tmp_path: Path
) -> None:
    model = _adapted_model()
    claim = _claimed(service, TRAIN, "cli")
    job_id = claim["job"]["id"]
    with service.client("worker") as client:
        folder = tenslora.save_adapter(model, tmp_path / "saved")
        assert _put(client, job_id, claim["lease_id"], _zip_folder(folder)).status_code == 200
        _complete(client, claim, {"accuracy": 0.5})
    done = _cli(service, "job", "adapter", str(job_id), "--out", str(tmp_path / "got"))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / "got"
    for name in (ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE):
        assert (tmp_path / "got" / name).read_bytes() == (folder / name).read_bytes()
    analysed = _cli(service, "analyze", str(job_id), "--json")
    assert analysed.returncode == 0, analysed.stderr
    assert json.loads(analysed.stdout)["method"] == "att_qkv"
    table = _cli(service, "analyze", str(job_id))
    assert table.returncode == 0 and "HeadDim" in table.stdout and "rank @ 90%" in table.stdout
    missing = _cli(service, "job", "adapter", str(2**31 - 1), "--out", str(tmp_path / "none"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_the_dashboard_links_the_adapter_and_shows_its_mode_analysis(
    service: Service, tmp_path: Path
) -> None:
    from tenslora.analysis.hosvd import adapter_mode_spectra

    folder = tenslora.save_adapter(_adapted_model(), tmp_path / "saved")
    analysis = adapter_mode_spectra(folder)
    with service.client("submitter") as client:
        sweep = client.post("/api/v1/sweeps", json={"name": "dashboard", "base": TRAIN,
                                                    "grid": {"seed": [1, 2]}}).json()
    with service.client("worker") as client:
        claims = [client.post("/api/v1/jobs/claim", json={"worker_id": "dash",
                                                          "free_memory_mb": 10**6}).json()
                  for _ in range(2)]
        with_adapter, without = claims
        body = _zip_folder(folder, {ADAPTER_ANALYSIS_FILE: analysis.to_json().encode()})
        assert _put(client, with_adapter["job"]["id"], with_adapter["lease_id"],
                    body).status_code == 200
        _complete(client, with_adapter, {"accuracy": 0.6})
        _complete(client, without, {"accuracy": 0.9})  # better, but it kept no adapter
    job_id = with_adapter["job"]["id"]
    with httpx.Client(base_url=service.url, timeout=30) as browser:  # no token: public pages
        page = browser.get(f"/jobs/{job_id}").text
        download = browser.get(f"/jobs/{job_id}/adapter.zip")
        other = browser.get(f"/jobs/{without['job']['id']}").text
        missing = browser.get(f"/jobs/{without['job']['id']}/adapter.zip")
        results = browser.get(f"/sweeps/{sweep['id']}", params={"group_by": "adapter.method"})
    assert f'href="/jobs/{job_id}/adapter.zip"' in page and "Sign in to download" in page
    # A public dashboard shows the numbers, never the weights: anonymous viewers sign in first.
    assert download.status_code == 303
    assert download.headers["location"].startswith("/login?next=")
    with httpx.Client(base_url=service.url, timeout=30) as browser:
        signed_in = browser.post("/login", data={"token": service.tokens["submitter"], "next": "/"})
        assert signed_in.status_code == 303
        download = browser.get(f"/jobs/{job_id}/adapter.zip")
        missing = browser.get(f"/jobs/{without['job']['id']}/adapter.zip")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    with service.client("submitter") as client:
        assert download.content == client.get(f"/api/v1/jobs/{job_id}/adapter").content
    (construction,) = analysis.constructions
    assert f'data-method="{construction.method}"' in page
    for mode in construction.modes:
        assert f'data-mode="{mode}"' in page
    assert "This run kept no adapter" in other and missing.status_code == 404
    best_cell = re.search(r'<td class="best-adapter">(.*?)</td>', results.text, re.S)
    assert best_cell is not None and f'href="/jobs/{job_id}/adapter.zip"' in best_cell.group(1)


def _with_adapter(service: Service, tmp_path: Path, name: str, analysis: bytes | None = None
                  ) -> tuple[dict[str, Any], Path]:
    """A claimed train job and a saved adapter folder (zipped with ``analysis`` when given)."""
    claim = _claimed(service, TRAIN, name)
    folder = tenslora.save_adapter(_adapted_model(), tmp_path / name)
    if analysis is not None:
        with service.client("worker") as client:
            stored = _put(client, claim["job"]["id"], claim["lease_id"],
                          _zip_folder(folder, {ADAPTER_ANALYSIS_FILE: analysis}))
        assert stored.status_code == 200, stored.text
    return claim, folder


DEEP = b'{"method": ' + b"[" * 300 + b"]" * 300 + b"}"


def test_an_analysis_the_page_cannot_read_is_left_out_with_a_note_and_the_adapter_kept(
    service: Service, tmp_path: Path
) -> None:
    """Finding 8: adapter_analysis.json arrives inside the zip, where no body check saw it."""
    claim, folder = _with_adapter(service, tmp_path, "bad-analysis")
    job_id, lease = claim["job"]["id"], claim["lease_id"]
    bad = {
        "surrogate": json.dumps(analysis_document(method="\udc00")).encode(),
        "NUL": json.dumps(analysis_document(method="a\x00b")).encode(),
        "deeper than 32": DEEP,
        "constructions": json.dumps(analysis_document(constructions="all of them")).encode(),
        "energy_kept": json.dumps(analysis_document(energy_kept=1e300)).encode(),
    }
    with service.client("worker") as client:
        for words, analysis in bad.items():
            answer = _put(client, job_id, lease, _zip_folder(folder, {ADAPTER_ANALYSIS_FILE:
                                                                       analysis}))
            assert answer.status_code == 200, answer.text
            note = answer.json()["analysis_note"]
            assert note.startswith(f"{ADAPTER_ANALYSIS_FILE} was left out") and words in note
        _complete(client, claim, {"accuracy": 0.5})
        assert client.get(f"/api/v1/jobs/{job_id}/adapter").status_code == 200
    with httpx.Client(base_url=service.url, timeout=30) as browser:
        page = browser.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and f'href="/jobs/{job_id}/adapter.zip"' in page.text
    assert "service left out one it could not read" in page.text


def test_a_stored_analysis_the_page_cannot_read_costs_the_table_not_the_page(
    service: Service, tmp_path: Path
) -> None:
    """Rows stored before the checks: GET /jobs/{id} answered 500 for good."""
    from sqlalchemy import update

    from scheduler.models import JOB_ADAPTERS

    claim, _ = _with_adapter(service, tmp_path, "stored-analysis",
                             json.dumps(analysis_document()).encode())
    job_id = claim["job"]["id"]
    with service.client("worker") as client:
        _complete(client, claim, {"accuracy": 0.5})
    stored: list[Any] = [json.loads(DEEP), ["not", "an", "object"],
                         analysis_document(constructions="all of them"),
                         analysis_document(constructions=[{"method": "att"}])]
    if service.database_url.startswith("sqlite"):  # Postgres' jsonb holds neither
        stored += [analysis_document(method="\udc00"), analysis_document(method="a\x00b")]
    database = Database(service.database_url, artifacts=service.artifacts)
    try:
        for analysis in stored:
            with database.session() as session:
                session.execute(update(JOB_ADAPTERS).where(JOB_ADAPTERS.c.job_id == job_id)
                                .values(analysis=analysis))
            with httpx.Client(base_url=service.url, timeout=30) as browser:
                page = browser.get(f"/jobs/{job_id}")
                home = browser.get("/")
            assert page.status_code == 200, (analysis, page.text[-2000:])
            assert "The stored mode analysis cannot be shown" in page.text
            assert home.status_code == 200
    finally:
        database.dispose()


def test_a_zip_of_more_files_than_the_setting_is_refused_before_its_directory_is_read(
    service: Service, tmp_path: Path
) -> None:
    claim, folder = _with_adapter(service, tmp_path, "members")
    crowded = _zip_folder(folder, {f"padding/{index}": b"" for index in range(70)})
    with service.client("worker") as client:
        refused = _put(client, claim["job"]["id"], claim["lease_id"], crowded)
        assert refused.status_code == 422, refused.text
        assert "TENSLORA_MAX_ADAPTER_MEMBERS" in refused.json()["detail"]
        assert _put(client, claim["job"]["id"], claim["lease_id"],
                    _zip_folder(folder)).status_code == 200
        _complete(client, claim, {"accuracy": 0.5})
