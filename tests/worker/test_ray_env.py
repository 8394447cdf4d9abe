"""The environment the worker gives Ray (``worker.ray_env``), without starting Ray."""

from __future__ import annotations

import logging
import shutil
import stat
import sys
from pathlib import Path

import pytest

from worker.ray_env import (
    RayEnvironmentError,
    is_loopback,
    join_failure_hint,
    prepare_join,
    prepare_local_head,
)


@pytest.fixture
def ray_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)


def test_the_own_head_is_kept_on_loopback_with_a_private_token(ray_not_imported) -> None:
    environ = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    temp_dir = prepare_local_head(environ)
    try:
        assert environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
        assert environ["RAY_AUTH_MODE"] == "token"  # never switched off for the own head
        assert environ["RAY_TMPDIR"] == temp_dir and len(temp_dir) < 30  # socket paths stay short
        token = Path(environ["RAY_AUTH_TOKEN_PATH"])
        assert token.parent == Path(temp_dir)
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text()) == 64
    finally:
        shutil.rmtree(temp_dir)


def test_a_token_the_user_gave_is_used_as_is(ray_not_imported) -> None:
    environ = {"RAY_AUTH_TOKEN": "x" * 64}
    temp_dir = prepare_local_head(environ)
    shutil.rmtree(temp_dir)
    assert "RAY_AUTH_TOKEN_PATH" not in environ and environ["RAY_AUTH_MODE"] == "token"


def test_ray_imported_too_early_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", object())
    with pytest.raises(RayEnvironmentError, match="imported before"):
        prepare_local_head({})


def test_joining_asks_for_token_auth_unless_told_otherwise(caplog) -> None:
    environ: dict[str, str] = {}
    prepare_join(environ)
    assert environ["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_TOKEN_PATH" in join_failure_hint(environ)
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in environ  # a cluster's nodes need their LAN

    told = {"RAY_AUTH_MODE": "disabled"}
    with caplog.at_level(logging.WARNING, logger="worker"):
        prepare_join(told)
    assert told["RAY_AUTH_MODE"] == "disabled"
    assert "without authentication" in caplog.text
    assert join_failure_hint(told) == ""


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::ffff:127.0.0.1]", True),
     ("*", False), ("0.0.0.0", False), ("[::]", False), ("192.0.2.2", False), ("", False)],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
