"""Engines, sessions and the one context manager every storage operation runs in."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from scheduler.blob_store import SESSION_KEY, BlobStore, default_root
from scheduler.errors import Conflict, InvalidInput, SchedulerError, StorageUnavailable

log = logging.getLogger(__name__)
STORAGE_UNAVAILABLE = "the database is unavailable; try again later"


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL (readers never block the writer) and explicit BEGINs we choose ourselves.

    pysqlite's own transaction handling would issue a deferred BEGIN late; a claim needs
    ``BEGIN IMMEDIATE`` so two claimers serialise on the write lock instead of both reading
    the same queued job. Within one process, writers also queue on a thread lock, held from
    BEGIN until the connection returns to the pool: SQLite's busy handler would otherwise
    poll with sleeps of up to 100 ms, which is what made the slowest claims slow.
    """
    write_lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode == "IMMEDIATE":
            if not write_lock.acquire(timeout=busy_timeout_ms / 1000):
                raise StorageUnavailable(STORAGE_UNAVAILABLE)
            connection.info["holds_write_lock"] = True
        connection.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop("holds_write_lock", False):
            write_lock.release()


def make_engine(url: str, busy_timeout_ms: int = 30_000) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            pool_size=16,
            max_overflow=48,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(url, pool_size=16, max_overflow=32, pool_pre_ping=True)


class Database:
    """An engine and two session factories: ``write`` (the default) and ``read``.

    On SQLite a write session opens with ``BEGIN IMMEDIATE`` and a read session with a deferred
    ``BEGIN``, so listing jobs never queues behind claims. Postgres treats both alike.
    ``artifacts``: the folder of the adapter zips (``scheduler.blob_store``; None: beside an
    SQLite file, else the user's data folder); every session carries its store.
    """

    def __init__(
        self, url: str, busy_timeout_ms: int = 30_000, artifacts: Path | None = None
    ) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout_ms)
        self.dialect = self.engine.dialect.name
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )
        self.use_store(BlobStore(artifacts or default_root(url)))

    def use_store(self, store: BlobStore) -> None:
        """Keep adapter zips in ``store`` (tests hand in one they can hold mid-write)."""
        self.artifacts = store
        for factory in (self._write, self._read):
            factory.configure(info={SESSION_KEY: store})

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        with session_scope(self._write if write else self._read) as session:
            yield session

    def ping(self) -> None:
        """One round trip to the database; ``StorageUnavailable`` when it does not answer."""
        with self.session(write=False) as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on any error, and turn driver errors into domain errors.

    A driver's message names hosts, ports, tables and values: it goes to the server's log, and
    the caller gets a generic ``detail``.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except SchedulerError:
        _rollback(session)
        raise
    except IntegrityError as exc:
        _rollback(session)
        log.warning("the database refused a change: %s", exc)
        raise Conflict("the change conflicts with what is stored") from exc
    except DataError as exc:
        _rollback(session)
        log.warning("the database refused a value: %s", exc)
        raise InvalidInput("the database refused a value of the request") from exc
    except (DBAPIError, SQLAlchemyError) as exc:
        _rollback(session)
        log.warning("storage error: %s", exc)
        raise StorageUnavailable(STORAGE_UNAVAILABLE) from exc
    except BaseException:
        _rollback(session)
        raise
    finally:
        try:
            session.close()
        except SQLAlchemyError:
            log.warning("closing a session failed", exc_info=True)


def _rollback(session: Session) -> None:
    """Roll back; a database that is gone cannot, and that must not hide the first error."""
    try:
        session.rollback()
    except SQLAlchemyError:
        log.warning("rollback failed", exc_info=True)
