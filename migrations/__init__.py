"""Alembic environment and versions of the scheduler schema (see scheduler.migrate)."""
