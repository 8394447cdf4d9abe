"""A throwaway Postgres server (``initdb`` + ``pg_ctl`` from PATH) in temporary folders, on
127.0.0.1: for the tests and benches (the product connects to a Postgres it is given)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from launch.processes import free_port

__all__ = ["PostgresServer", "have_postgres", "running_postgres"]

_database_numbers = itertools.count()


def have_postgres() -> bool:
    return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None


def _as_postgres(*command: str) -> list[str]:
    # initdb refuses to run as root; the sessions (and CI containers) run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@dataclass
class PostgresServer:
    port: int
    data_dir: Path | None = None

    def stop(self) -> None:
        """Stop the server now (an outage, for tests); ``running_postgres`` still cleans up."""
        if self.data_dir is not None:
            subprocess.run(
                _as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"),
                capture_output=True, timeout=60,
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new empty database on this server (cheaper than a server per test)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_database_numbers)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres(**settings: str) -> Iterator[PostgresServer]:
    """A fresh cluster on a free port, stopped and deleted on exit; ``settings`` become
    ``-c name=value`` server options (e.g. ``fsync="off"``, ``max_connections="200"``)."""
    data_dir, socket_dir = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    port, log = free_port(), socket_dir / "pg.log"
    try:
        subprocess.run(
            _as_postgres("initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres",
                         "--no-sync"),
            check=True, capture_output=True, timeout=120,
        )
        options = " ".join(
            [f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"]
            + [f"-c {name}={value}" for name, value in settings.items()]
        )
        started = subprocess.run(
            _as_postgres("pg_ctl", "-D", str(data_dir), "-l", str(log), "-o", options, "-w",
                         "start"),
            capture_output=True, timeout=120,
        )
        if started.returncode != 0:
            detail = log.read_text() if log.exists() else started.stderr.decode()
            raise RuntimeError(f"Postgres did not start: {detail}")
        yield PostgresServer(port, data_dir)
    finally:
        PostgresServer(port, data_dir).stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)
