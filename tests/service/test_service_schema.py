"""Schema and packaging facts: migrations match the models; the API never imports torch."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine, inspect

from launch.processes import REPO, project_env
from scheduler.migrate import check, upgrade


def test_alembic_upgrade_on_empty_database_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    check(database_url)  # raises when autogenerate sees any difference
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"sweeps", "jobs", "metrics", "workers", "api_tokens", "result_values"} <= tables


def test_importing_the_api_and_scheduler_never_imports_torch() -> None:
    code = (
        "import sys, api.app, api.routes.jobs, scheduler.queue, scheduler.results, cli.main, "
        "api.dashboard.suggest, tenslora.core.allocation, tenslora.sweeps.presets; "
        "tenslora.core.allocation.allocate_ranks({}, 'lora', 10**6, 768, 12, 12); "
        "bad = sorted(m for m in ('torch', 'transformers', 'tensorly') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_openapi_schema_documents_every_error_with_its_body_and_the_enums() -> None:
    from api.app import create_app
    from protocol.vocabulary import JobStatus
    from scheduler.settings import Settings

    schema = create_app(Settings(database_url="sqlite://"), upgrade_schema=False).openapi()
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"401", "422", "503"}
            expected |= {"413"} if "requestBody" in operation else set()
            expected |= {"404"} if "{" in path else set()
            assert expected <= set(responses), (method, path, sorted(responses))
            for status, response in responses.items():
                if status.startswith("4") or status.startswith("5"):
                    body = response["content"]["application/json"]["schema"]["$ref"]
                    assert body.endswith("/ValidationErrorOut" if status == "422" else "/ErrorOut")
    assert components["ErrorOut"]["required"] == ["detail"]
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    status = parameters["status"]["schema"]["anyOf"][0]
    assert components[status["$ref"].rsplit("/", 1)[1]]["enum"] == [s.value for s in JobStatus]
    results = schema["paths"]["/api/v1/sweeps/{sweep_id}/results"]["get"]["parameters"]
    group_by = next(p for p in results if p["name"] == "group_by")["schema"]["anyOf"][0]
    paths = components[group_by["items"]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert {"tag", "adapter.method", "optim.core_lr_multiplier", "seed"} <= set(paths)
