"""The CLI on a local SQLite database, no server: the same scheduler functions, in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from launch.processes import REPO, project_env


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = project_env(TENSLORA_DATABASE_URL=f"sqlite:///{tmp_path / 'local.db'}")
    env.pop("TENSLORA_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sweep_submit_list_show_cancel_on_the_local_database(tmp_path: Path) -> None:
    sweep_file = tmp_path / "ablation.json"
    sweep_file.write_text(
        '{"base": {"task": "cola", "backbone": "minilm"}, "grid": {"adapter.method": '
        '["lora", "qkv", "depth"], "seed": [0, 1]}}'
    )
    submitted = run_cli(tmp_path, "sweep", "submit", str(sweep_file))
    assert submitted.returncode == 0, submitted.stderr
    assert "sweep 1 'ablation': 6 jobs" in submitted.stdout
    listed = run_cli(tmp_path, "sweep", "list")
    assert listed.returncode == 0 and "ablation" in listed.stdout
    cancelled = run_cli(tmp_path, "sweep", "cancel", "1")
    assert cancelled.returncode == 0 and "cancelled 6" in cancelled.stdout
    missing = run_cli(tmp_path, "sweep", "show", "42")
    assert missing.returncode == 2 and "sweep 42 does not exist" in missing.stderr


def test_unreadable_or_malformed_sweep_files_exit_2_with_a_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("base: [unclosed\n")
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    for path, message in (
        (broken, "not valid YAML"),
        (not_mapping, "must hold a mapping"),
        (tmp_path / "absent.yaml", "cannot read"),
    ):
        done = run_cli(tmp_path, "sweep", "submit", str(path))
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_db_upgrade_creates_the_schema_on_an_empty_database(tmp_path: Path) -> None:
    import sqlite3

    done = run_cli(tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "local.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "sweeps", "alembic_version"} <= tables
