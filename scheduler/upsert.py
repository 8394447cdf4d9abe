"""INSERT ... ON CONFLICT DO UPDATE for the two dialects we run on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(
    session: Session,
    table: Table,
    values: dict[str, Any],
    key: Sequence[str],
    updates: Callable[[Any], dict[str, Any]],
) -> None:
    """Insert ``values`` or, when ``key`` exists, apply ``updates(excluded)`` to the row."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    session.execute(
        statement.on_conflict_do_update(index_elements=list(key), set_=updates(statement.excluded))
    )
