"""Subprocesses of the project: their environment, free ports, bounded waits, stopping a group."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cli.local_cluster import free_port

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

__all__ = ["REPO", "WaitTimedOut", "free_port", "project_env", "stop_group", "wait_for"]


class WaitTimedOut(AssertionError):
    """A bounded wait ran out (an AssertionError, so pytest reports a failure, not an error)."""


# One Ray token for every Ray process the tests start (a multi-host cluster shares one token):
# Ray's authentication stays on, and nothing is written to ~/.ray.
RAY_TEST_TOKEN = secrets.token_hex(32)


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports the project (here, in CI and in benches).

    Ray runs with token authentication and, where a process starts a Ray of its own (Tune),
    on loopback; the worker sets both itself (tests/worker/test_ray_exposure.py starts it
    without these).
    """
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": RAY_TEST_TOKEN,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        **extra,
    }


def wait_for(what: str, check: Callable[[], T], timeout: float, every: float = 0.2) -> T:
    """Polls ``check`` until it returns something truthy and returns that; raises
    ``WaitTimedOut`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def stop_group(
    process: subprocess.Popen[Any], grace_s: float = 20, leader_signal: int | None = None
) -> None:
    """SIGTERM the process group we started (or ``leader_signal`` to its leader alone, which
    then stops the rest itself), then SIGKILL what is left of the group."""
    if process.poll() is None:
        if leader_signal is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(leader_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
