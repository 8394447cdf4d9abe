"""Subprocesses of the project: their environment, free ports, bounded waits, stopping a group."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

#: The folder that holds the project's packages: on the PYTHONPATH of every process started here.
REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class WaitTimedOut(TimeoutError):
    """A bounded wait ran out; the message names what was awaited."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One Ray token for every Ray process started from here (a cluster's processes share one):
# Ray's token authentication stays on, and Ray writes no token to ~/.ray.
RAY_TOKEN = secrets.token_hex(32)


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports the project: this one's, the project on the
    PYTHONPATH, no model hub, and Ray without usage stats, with token authentication (this
    process's ``RAY_AUTH_TOKEN``, else ``RAY_TOKEN``) and bound to 127.0.0.1 where a process
    starts a Ray of its own (set at process start, where Ray reads it). ``tenslora-worker`` keeps
    its own Ray on loopback with a token by itself (tests/worker/test_ray_exposure.py starts it
    without these)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or RAY_TOKEN,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        **extra,
    }


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float,
    every: float = 0.2,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Polls ``check`` until it returns something truthy and returns that; raises
    ``WaitTimedOut`` naming ``what`` after ``timeout`` seconds. ``sleep`` waits between polls
    (one that raises, e.g. on Ctrl-C, ends the wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f}s waiting for {what}")
        sleep(every)


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
