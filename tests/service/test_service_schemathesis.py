"""Schemathesis against the live server's OpenAPI schema, with every default check: no 5xx, every
status code and body as documented, invalid input refused, valid input accepted, correct
``Allow`` headers (the per-operation settings in schemathesis.toml say why two operations may
refuse schema-valid input)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launch.processes import project_env
from tests.service.conftest import Server


@pytest.mark.slow
def test_generated_requests_pass_every_default_check(server: Server, tmp_path: Path) -> None:
    # Some stored rows, so generated ids (schemathesis tries 1 first) reach real jobs and sweeps.
    with server.client("admin") as client:
        body = {"name": "fuzz", "base": {"kind": "synthetic"}, "grid": {"seed": [0, 1, 2]}}
        client.post("/api/v1/sweeps", json=body).raise_for_status()
        claim = {"worker_id": "fuzz", "free_memory_mb": 1000}
        assert client.post("/api/v1/jobs/claim", json=claim).status_code in (200, 204)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{server.url}/openapi.json",
            "--max-examples",
            "10",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--header",
            f"Authorization: Bearer {server.tokens['admin']}",
            "--seed",
            "1",
        ],
        cwd=tmp_path,  # schemathesis writes a .schemathesis/ folder where it runs
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
