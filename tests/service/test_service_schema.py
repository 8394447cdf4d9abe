"""Schema and packaging facts: migrations match the models; the API never imports torch."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine, inspect

from scheduler.migrate import check, upgrade
from tests.helpers.processes import REPO, project_env


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
        "api.dashboard.suggest, tenslora.allocation, tenslora.sweep_presets; "
        "tenslora.allocation.allocate_ranks({}, 'lora', 10**6, 768, 12, 12); "
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
