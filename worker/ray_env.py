"""The environment the worker's Ray runs in: never open to the network, never without a token.

- The worker's own Ray head (no ``--ray-address``) listens on loopback only and uses token
  authentication with a token of its own, in a file only this user can read.
- A worker that joins a cluster uses Ray's token authentication unless ``RAY_AUTH_MODE`` says
  otherwise; the cluster's hosts share one token (docs/deployment.md).

``tenslora sweep tune`` (``worker.tune``) prepares its own Ray the same way.

Ray decides where its processes bind when ``ray`` is first imported (from
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``), and its processes inherit this process's environment: so
``worker.main`` prepares the environment here, before anything imports Ray.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger("worker")

# "0": Ray takes 127.0.0.1 for this node's address, and its servers then bind only there.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE = "RAY_AUTH_MODE"
AUTH_TOKEN = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
TOKEN_FILE = "auth_token"


class RayEnvironmentError(RuntimeError):
    """Ray cannot be started safely from this process; the message says why."""


def prepare_local_head(environ: MutableMapping[str, str] = os.environ) -> str:
    """Sets up ``environ`` for a Ray head of the worker's own, on loopback with token auth.

    Returns the head's temp folder (sockets, logs, the token file), made for this process only;
    the caller removes it when Ray has stopped.
    """
    if "ray" in sys.modules and environ.get(LOOPBACK_ONLY) != "0":
        raise RayEnvironmentError(
            "Ray was imported before the worker could keep its head on loopback; start the "
            "worker as its own process (tenslora-worker)"
        )
    environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    environ[LOOPBACK_ONLY] = "0"
    if environ.get(AUTH_MODE, "token").lower() != "token":
        log.info("%s=%s ignored: the worker's own Ray head always requires its token",
                 AUTH_MODE, environ[AUTH_MODE])
    environ[AUTH_MODE] = "token"
    # Ray's socket paths must stay short (the Unix socket path limit): a folder right under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="tlw-", dir="/tmp" if os.path.isdir("/tmp") else None)
    environ["RAY_TMPDIR"] = temp_dir
    if not environ.get(AUTH_TOKEN) and not environ.get(AUTH_TOKEN_PATH):
        # Nobody else joins this head: a fresh token, and nothing written to ~/.ray.
        token_path = Path(temp_dir) / TOKEN_FILE
        descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token_file:
            token_file.write(secrets.token_hex(32))
        environ[AUTH_TOKEN_PATH] = str(token_path)
    return temp_dir


def prepare_join(environ: MutableMapping[str, str] = os.environ) -> None:
    """Sets up ``environ`` for joining a cluster: token authentication unless told otherwise."""
    environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    mode = environ.setdefault(AUTH_MODE, "token")
    if mode.lower() != "token":
        log.warning(
            "%s=%s: joining a Ray cluster without authentication; anyone who reaches its ports "
            "can run code on its hosts (docs/security.md)", AUTH_MODE, mode,
        )


def join_failure_hint(environ: MutableMapping[str, str] = os.environ) -> str:
    """What to check when joining failed: most often the cluster's token."""
    if environ.get(AUTH_MODE, "").lower() != "token":
        return ""
    return (" (the cluster's hosts share one Ray token: give the worker the same one through "
            f"{AUTH_TOKEN_PATH}, {AUTH_TOKEN} or ~/.ray/{TOKEN_FILE}; see docs/deployment.md)")


def check_head_on_loopback() -> None:
    """After ``ray.init`` of a head of our own: raises ``RayEnvironmentError`` unless Ray took a
    loopback address for this node (its servers bind to that address; any other is open to the
    network)."""
    import ray

    address = ray.util.get_node_ip_address()
    if not is_loopback(address):
        raise RayEnvironmentError(f"the local Ray head took {address}, not loopback; stopping it")


def is_loopback(address: str) -> bool:
    """``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1`` (an IPv6 socket bound to IPv4 loopback)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)
