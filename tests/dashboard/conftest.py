"""The dashboard tests reuse the scheduler tests' Postgres server and real-server fixture."""

from tests.service.conftest import postgres, server

__all__ = ["postgres", "server"]
