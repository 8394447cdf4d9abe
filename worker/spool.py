"""Finished jobs' reports on local disk until the API has them: no finished run is lost.

A report is written here *before* it is sent (one JSON file per job attempt, written atomically),
and removed once the API took it. If the API is down, or the worker dies between the end of a job
and the answer of the API, the file stays and ``flush`` resends it later, from this worker or the
next one started on the host. Sending twice is harmless: the API ignores a second report of the
same attempt. A report the API refuses for good (the lease was reaped and the job ran elsewhere)
moves to ``rejected/`` rather than vanishing.

A report is a ``protocol.report.JobReport`` (its ``to_json``, plus the spool's own
``adapter_file`` and ``spooled_at``); files spooled before its ``Outcome`` words (``complete``,
``fail``) still read. A report may carry the job's trained adapter: a zip beside it
(``<report>.adapter.zip``, written durably before the report that names it), sent with it and
removed or moved with it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, ApiRejected, ApiUnavailable
from protocol.report import JobReport

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, report: JobReport, adapter: bytes | None = None) -> Path:
        """Stores ``report`` (and the ``adapter`` zip it carries) durably; returns its path."""
        path = self.directory / f"job-{report.job_id}-{_safe(report.lease_id)}.json"
        stored: dict[str, Any] = {**report.to_json(), "spooled_at": time.time()}
        if adapter is not None:
            _write_durably(_attachment(path), adapter)
            stored["adapter_file"] = _attachment(path).name
        _write_durably(path, json.dumps(stored).encode())
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("job-*.json"))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _attachment(path).unlink(missing_ok=True)

    def send(self, client: ApiClient, path: Path, *, retry_for_s: float | None = None) -> bool:
        """Sends one spooled report; True when it left the spool (taken or rejected for good).

        Raises ``ApiUnavailable`` when the API cannot be reached: the report stays.
        """
        try:
            stored = json.loads(path.read_text())
            report = JobReport.from_json(stored)
        except FileNotFoundError:
            return True  # another sender got there first
        except ValueError as error:
            self._reject(path, f"unreadable report ({error})")
            return True
        retry = {} if retry_for_s is None else {"retry_for_s": retry_for_s}
        adapter = self._adapter(path, stored)
        try:
            client.send_report(report, adapter, **retry)
        except ApiRejected as error:  # LeaseLost included
            self._reject(path, str(error))
            return True
        self.remove(path)
        return True

    def flush(self, client: ApiClient, *, retry_for_s: float = 1.0) -> int:
        """Resends every spooled report; stops at the first sign that the API is still down."""
        sent = 0
        for path in self.pending():
            try:
                self.send(client, path, retry_for_s=retry_for_s)
            except ApiUnavailable:
                break
            sent += 1
            log.info("resent spooled report %s", path.name)
        return sent

    def _adapter(self, path: Path, stored: dict[str, Any]) -> bytes | None:
        if not stored.get("adapter_file"):
            return None
        try:
            return _attachment(path).read_bytes()
        except OSError as error:  # the result still goes; the job then has no adapter
            log.warning("spooled report %s: its adapter is unreadable: %s", path.name, error)
            return None

    def _reject(self, path: Path, why: str) -> None:
        rejected = self.directory / "rejected"
        rejected.mkdir(exist_ok=True)
        log.warning("the API refused spooled report %s for good: %s", path.name, why)
        for item in (_attachment(path), path):
            with contextlib.suppress(FileNotFoundError):
                os.replace(item, rejected / item.name)


def _attachment(report_path: Path) -> Path:
    return report_path.with_suffix(".adapter.zip")


def _write_durably(path: Path, data: bytes) -> None:
    """fsync, then rename: a crash leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))[:64]
