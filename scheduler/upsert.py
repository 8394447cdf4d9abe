"""INSERT ... ON CONFLICT DO UPDATE for the two dialects we run on, built once per shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

Updates = Callable[[Any], dict[str, Any]]


@cache
def _statement(
    dialect: str, table: Table, columns: tuple[str, ...], key: tuple[str, ...], updates: Updates
) -> Insert:
    # Statements are cached by shape (bound values vary): building one costs more than running it.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values({name: bindparam(f"v_{name}") for name in columns})
    return statement.on_conflict_do_update(
        index_elements=list(key), set_=updates(statement.excluded)
    )


def upsert(
    session: Session,
    table: Table,
    values: dict[str, Any],
    key: Sequence[str],
    updates: Updates,
) -> None:
    """Insert ``values`` or, when ``key`` exists, apply ``updates(excluded)`` to the row.

    ``updates`` must be a module-level function (it is part of the cache key).
    """
    dialect = session.get_bind().dialect.name
    statement = _statement(dialect, table, tuple(sorted(values)), tuple(key), updates)
    session.execute(statement, {f"v_{name}": value for name, value in values.items()})
