"""The dashboard tests reuse the scheduler tests' Postgres server (started by the tests)."""

from tests.service.conftest import postgres

__all__ = ["postgres"]
