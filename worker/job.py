"""One claimed job from start to reported end: child process, heartbeats, metrics, the report.

``RunningJob.start`` starts the child in the calling thread (the parent-death signal follows the
thread that forked, and the actor's loop thread outlives its jobs); a thread of its own then
heartbeats the lease, forwards metric batches and, when the child ends, writes the report to the
spool before sending it, so a finished run survives an unreachable API or a dying worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.child import JobProcess, start_job
from worker.client import ApiClient, ApiError, ApiRejected, ApiUnavailable, Lease, LeaseLost
from worker.spool import Spool

log = logging.getLogger(__name__)

METRICS_FLUSH_S = 1.0
MAX_BUFFERED_POINTS = 200_000  # while the API is down; beyond this the oldest go


class RunningJob:
    def __init__(
        self,
        lease: Lease,
        reserved_mb: int,
        client: ApiClient,
        spool: Spool,
        log_dir: Path,
        on_end: threading.Event,
        claim_sent_at: float | None = None,
    ) -> None:
        self.lease = lease
        self.reserved_mb = reserved_mb
        self.allocated = False  # set once the child reports its memory is held
        # Monotonic instants for the overhead benchmark: claim sent, child running, child done,
        # report taken by the API.
        self._at: dict[str, float] = {"claim": claim_sent_at or time.monotonic()}
        self.outcome: str | None = None  # complete | fail | cancelled | lost | released
        self._client, self._spool, self._log_dir, self._on_end = client, spool, log_dir, on_end
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._points: list[dict[str, Any]] = []
        self._stop_reason: str | None = None
        self._child: JobProcess | None = None
        self._thread = threading.Thread(
            target=self._supervise, daemon=True, name=f"job-{lease.job_id}"
        )

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def start(self, device: str, threads: int | None = None) -> None:
        self._child = start_job(self.lease.spec, device, self._log_path(), threads=threads)
        threading.Thread(target=self._read_events, daemon=True).start()
        self._thread.start()

    def stop(self, reason: str) -> None:
        """Ends the child now; ``reason`` ``released`` also gives the lease back to the queue."""
        self._stop_reason = reason
        if self._child:
            self._child.kill()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def timings(self) -> dict[str, Any]:
        """Scheduling overhead of this job: claim to child running, child done to report taken."""
        at = self._at

        def span(start: str, end: str) -> float | None:
            return round(at[end] - at[start], 4) if start in at and end in at else None

        return {
            "job_id": self.lease.job_id,
            "attempt": self.lease.attempt,
            "outcome": self.outcome,
            "claim_to_start_s": span("claim", "child_ready"),
            "end_to_stored_s": span("child_end", "reported"),
        }

    # ---- the supervising thread ------------------------------------------------------------

    def _read_events(self) -> None:
        assert self._child is not None
        for event in self._child.events():
            self._events.put(event)
        self._events.put(None)  # the child closed its end: it has exited

    def _supervise(self) -> None:
        try:
            report = self._follow_child()
            if report is not None:
                self._deliver(report)
        except Exception:  # a supervisor must never die silently with a job in hand
            log.exception("job %s: supervisor failed", self.lease.job_id)
            self.outcome = self.outcome or "fail"
        finally:
            if self._child:
                self._child.kill()
            self._on_end.set()

    def _follow_child(self) -> dict[str, Any] | None:
        assert self._child is not None
        interval = _heartbeat_interval(self.lease)
        next_beat = time.monotonic() + interval
        next_flush = time.monotonic() + METRICS_FLUSH_S
        final: dict[str, Any] | None = None
        while True:
            wait = max(0.0, min(next_beat, next_flush) - time.monotonic())
            try:
                event = self._events.get(timeout=wait)
            except queue.Empty:
                event = {"event": "tick"}
            if event is None:
                break
            kind = event.get("event")
            if kind != "tick":
                self._at.setdefault("child_ready", time.monotonic())
            if kind == "allocated":
                self.allocated = True
            elif kind == "metrics":
                self._buffer(event.get("points") or [])
            elif kind in ("result", "error"):
                final = event
                self._at["child_end"] = time.monotonic()
            now = time.monotonic()
            if now >= next_flush:
                self._flush_metrics()
                next_flush = now + METRICS_FLUSH_S
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + interval
        code = self._child.wait()
        # A job that finished just as the drain ended is reported, not given back.
        if self._stop_reason and not (self._stop_reason == "released" and final):
            self._end_stopped()
            return None
        return self._report(final, code)

    def _heartbeat(self) -> None:
        try:
            cancelled = self._client.heartbeat(self.lease, retry_for_s=1.0)
        except LeaseLost as error:
            log.warning("job %s: lease lost (%s); stopping it", self.lease.job_id, error)
            self.stop("lost")
            return
        except ApiError as error:  # the API may come back before the lease runs out
            log.warning("job %s: heartbeat failed: %s", self.lease.job_id, error)
            return
        if cancelled:
            log.info("job %s: cancelled; stopping it", self.lease.job_id)
            self.stop("cancelled")

    def _buffer(self, points: list[dict[str, Any]]) -> None:
        self._points.extend(points)
        del self._points[:-MAX_BUFFERED_POINTS]

    def _flush_metrics(self) -> None:
        if not self._points:
            return
        batch, self._points = self._points, []
        try:
            self._client.post_metrics(
                self.lease.job_id, self.lease.lease_id, batch, retry_for_s=1.0
            )
        except ApiUnavailable:
            self._points = batch + self._points  # they go with the report later
        except (LeaseLost, ApiRejected) as error:
            log.warning("job %s: metrics refused: %s", self.lease.job_id, error)

    def _report(self, final: dict[str, Any] | None, exit_code: int) -> dict[str, Any]:
        report: dict[str, Any] = {
            "job_id": self.lease.job_id,
            "lease_id": self.lease.lease_id,
            "attempt": self.lease.attempt,
            "points": self._points,
        }
        if final and final["event"] == "result" and exit_code == 0:
            return {**report, "outcome": "complete", "result": final.get("result") or {}}
        if final and final["event"] == "error":
            error = final.get("error") or "the job failed"
        else:
            error = f"the job's process exited with code {exit_code}{self._log_tail()}"
        return {**report, "outcome": "fail", "error": error}

    def _deliver(self, report: dict[str, Any]) -> None:
        path = self._spool.put(report)
        try:
            self._spool.send(self._client, path)
            self._at["reported"] = time.monotonic()
        except ApiUnavailable as error:
            log.warning("job %s: report spooled until the API is back (%s)",
                        self.lease.job_id, error)
        # Done only now: the job's memory is offered again once the API, too, saw the job end.
        self.outcome = report["outcome"]

    def _end_stopped(self) -> None:
        self.outcome = self._stop_reason
        if self._stop_reason != "released":
            return
        try:
            self._client.release(self.lease.job_id, self.lease.lease_id)
        except ApiError as error:  # the lease will expire instead: slower, nothing lost
            log.warning("job %s: release failed: %s", self.lease.job_id, error)

    def _log_path(self) -> Path:
        return self._log_dir / f"job-{self.lease.job_id}-attempt{self.lease.attempt}.log"

    def _log_tail(self) -> str:
        try:
            tail = self._log_path().read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return ": " + " | ".join(tail) if tail else ""


def _heartbeat_interval(lease: Lease) -> float:
    """A third of the lease, so two heartbeats may be lost before it runs out."""
    seconds = 20.0
    if lease.lease_expires_at:
        try:
            expires = datetime.fromisoformat(lease.lease_expires_at.replace("Z", "+00:00"))
            if expires.tzinfo is None:  # the API speaks UTC
                expires = expires.replace(tzinfo=UTC)
            seconds = (expires - datetime.now(UTC)).total_seconds() / 3
        except ValueError:
            pass
    return min(max(seconds, 0.3), 20.0)
