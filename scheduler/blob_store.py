"""Adapter zips as files beside the database, the database holding each one's name.

A blob is written to a temporary file in the store's folder, flushed to disk and renamed into
place before the database hears of it, so the database's write lock is never held while a blob
arrives or is written: the row that names it is one short transaction. A blob is never rewritten
in place; a replaced one is removed after the row that named it has changed. A file no row names
(a crash between the rename and the commit) is garbage, never served.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scheduler.errors import NotFound

ARTIFACTS_SETTING = "TENSLORA_ARTIFACTS_DIR"
SESSION_KEY = "blob_store"


class BlobStore:
    """A folder of immutable blobs, each named by a random token (never by the uploader)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        """Write ``data`` durably and return its name."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_hex(16)}.zip"
        temporary = self.root / f".{name}.part"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.root / name)
        return name

    def read(self, name: str) -> bytes:
        try:
            return (self.root / _checked(name)).read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"the adapter file {name} is missing from {self.root} ({ARTIFACTS_SETTING}); "
                "restore it from the backup taken with the database"
            ) from None

    def remove(self, name: str) -> None:
        (self.root / _checked(name)).unlink(missing_ok=True)


def default_root(database_url: str) -> Path:
    """``<file>.artifacts`` beside an SQLite file; else the user's data folder."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        return path.with_name(path.name + ".artifacts")
    from platformdirs import user_data_dir

    return Path(user_data_dir("tenslora", appauthor=False)) / "artifacts"


def session_store(session: Session) -> BlobStore:
    """The store of the ``Database`` that opened ``session``."""
    store = session.info.get(SESSION_KEY)
    if not isinstance(store, BlobStore):
        raise RuntimeError("this session was not opened by scheduler.db.Database")
    return store


def _checked(name: str) -> str:
    # Names come from ``put``; a row edited by hand must still not reach outside the folder.
    if "/" in name or "\\" in name or name.startswith("."):
        raise NotFound(f"the adapter file name {name!r} is not one this service wrote")
    return name
