"""The one lease keeper: everything a claimed job owes the API while it runs and when it ends.

A ``LeaseKeeper`` heartbeats the lease (a third of its length), forwards metric batches every
second, notices a cancelled sweep or a lost lease (and says so through ``on_stop``), and delivers
the final report through the disk spool (``worker.spool``): written first, then sent, so a
finished run survives an unreachable API or a dying process. Every job's process
(``worker.pack.RunningPack``, for ``tenslora-worker`` and Ray Tune trials alike) has one keeper
per job.

Keepers hold no shared state: several run side by side in one process, one per job. A report is
a ``protocol.report.JobReport``; ``finish`` adds the metric points not sent yet, and with
``adapter_dir`` zips the trained adapter into the spool beside the report: it is uploaded
before the result, and survives an outage with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, ApiError, ApiRejected, ApiUnavailable, Lease, LeaseLost
from protocol.report import JobReport
from protocol.vocabulary import Outcome
from tenslora.core.archive import zip_adapter
from tenslora.core.metric_contract import ADAPTER_CONFIG_FILE
from worker.spool import Spool

log = logging.getLogger(__name__)

METRICS_FLUSH_S = 1.0
HEARTBEAT_RETRY_S = 1.0  # per beat: the next beat comes well before the lease runs out
MAX_BUFFERED_POINTS = 200_000  # while the API is down; beyond this the oldest go
REDELIVER_EVERY_S = 2.0


class LeaseKeeper:
    def __init__(
        self,
        client: ApiClient,
        lease: Lease,
        spool: Spool,
        on_stop: Callable[[Outcome], None],
    ) -> None:
        """``on_stop(reason)`` is called from the keeper's thread when the job must end now:
        ``Outcome.cancelled`` (its sweep was cancelled) or ``Outcome.lost`` (the lease is
        another's)."""
        self.client, self.lease, self.spool = client, lease, spool
        self.stop_reason: Outcome | None = None
        self._on_stop = on_stop
        self._points: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._keep, daemon=True, name=f"lease-{lease.job_id}"
        )

    def start(self) -> None:
        self._thread.start()

    def add_points(self, points: list[dict[str, Any]]) -> None:
        """Metric points for the API; sent within a second, or with the report."""
        with self._lock:
            self._points.extend(points)
            del self._points[:-MAX_BUFFERED_POINTS]

    def close(self) -> None:
        """Stops heartbeats and metric flushes (idempotent); unsent points stay buffered."""
        self._closed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def finish(
        self,
        report: JobReport,
        *,
        adapter_dir: Path | None = None,
        retry_for_s: float | None = None,
        keep_trying_s: float = 0.0,
    ) -> bool:
        """Reports the job's end (``succeeded`` or ``failed``) with the points not sent yet:
        spooled first, then sent. True once the API took it (or refused it for good).

        ``keep_trying_s`` > 0 keeps the lease alive and resends for that long while the API is
        unavailable; False means the report is still in the spool (the next ``Spool.flush``
        on this host sends it).
        """
        with self._lock:
            points, self._points = self._points, []
        report = replace(report, points=(*report.points, *points))
        succeeded = report.outcome is Outcome.succeeded
        path = self.spool.put(report, _adapter_zip(adapter_dir) if succeeded else None)
        deadline = time.monotonic() + keep_trying_s
        try:
            while True:
                try:
                    return self.spool.send(self.client, path, retry_for_s=retry_for_s)
                except ApiUnavailable as problem:
                    if time.monotonic() >= deadline or self.stop_reason is Outcome.lost:
                        log.warning("job %s: report spooled until the API is back (%s)",
                                    self.lease.job_id, problem)
                        return False
                    log.warning("job %s: report spooled, resending (%s)",
                                self.lease.job_id, problem)
                    time.sleep(REDELIVER_EVERY_S)
        finally:
            self.close()

    def release(self) -> None:
        """Gives the lease back: the job returns to the queue at once."""
        self.close()
        try:
            self.client.release(self.lease.job_id, self.lease.lease_id)
        except ApiError as error:  # the lease will expire instead: slower, nothing lost
            log.warning("job %s: release failed: %s", self.lease.job_id, error)

    # ---- the keeper's thread ----------------------------------------------------------------

    def _keep(self) -> None:
        interval = heartbeat_interval(self.lease)
        next_beat = time.monotonic() + interval
        next_flush = time.monotonic() + METRICS_FLUSH_S
        while not self._closed.wait(max(0.0, min(next_beat, next_flush) - time.monotonic())):
            now = time.monotonic()
            if now >= next_flush:
                self._flush_metrics()
                next_flush = now + METRICS_FLUSH_S
            if now >= next_beat and self.stop_reason is None:
                self._heartbeat()
                next_beat = now + interval

    def _heartbeat(self) -> None:
        try:
            beat = self.client.heartbeat(self.lease, retry_for_s=HEARTBEAT_RETRY_S)
        except LeaseLost as error:
            log.warning("job %s: lease lost (%s); stopping it", self.lease.job_id, error)
            self._stop(Outcome.lost)
            return
        except ApiError as error:  # the API may come back before the lease runs out
            log.warning("job %s: heartbeat failed: %s", self.lease.job_id, error)
            return
        if beat.cancelled:
            log.info("job %s: cancelled; stopping it", self.lease.job_id)
            self._stop(Outcome.cancelled)

    def _stop(self, reason: Outcome) -> None:
        self.stop_reason = reason
        self._on_stop(reason)

    def _flush_metrics(self) -> None:
        with self._lock:
            batch, self._points = self._points, []
        if not batch:
            return
        try:
            self.client.post_metrics(
                self.lease.job_id, self.lease.lease_id, batch, retry_for_s=METRICS_FLUSH_S
            )
        except ApiUnavailable:
            with self._lock:  # they go with the next batch, or with the report
                self._points = batch + self._points
        except ApiRejected as error:
            log.warning("job %s: metrics refused: %s", self.lease.job_id, error)


def _adapter_zip(folder: Path | None) -> bytes | None:
    """The zip of the adapter the job saved in ``folder``; None when it saved none (a synthetic
    job, or a run that failed before saving)."""
    if folder is None or not (folder / ADAPTER_CONFIG_FILE).is_file():
        return None
    try:
        return zip_adapter(folder)
    except OSError as error:
        log.warning("cannot read the adapter in %s: %s", folder, error)
        return None


def heartbeat_interval(lease: Lease) -> float:
    """A third of the lease, so two heartbeats may be lost before it runs out."""
    seconds = (lease.lease_expires_at - datetime.now(UTC)).total_seconds() / 3
    return min(max(seconds, 0.3), 20.0)
