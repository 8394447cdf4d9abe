"""One claimed job from start to reported end: its child process and its lease keeper.

``RunningJob.start`` starts the child in the calling thread (the parent-death signal follows the
thread that forked, and the actor's loop thread outlives its jobs); a thread of its own then
follows the child's events while the lease keeper (``worker.lease``) heartbeats, forwards metric
batches and, when the child ends, spools the report before sending it, so a finished run
survives an unreachable API or a dying worker.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, Lease
from worker.child import JobProcess, start_job
from worker.lease import LeaseKeeper
from worker.spool import Spool

log = logging.getLogger(__name__)


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
        self._log_dir, self._on_end = log_dir, on_end
        self._keeper = LeaseKeeper(client, lease, spool, on_stop=self.stop)
        self._stop_reason: str | None = None
        self._child: JobProcess | None = None
        self._thread = threading.Thread(
            target=self._supervise, daemon=True, name=f"job-{lease.job_id}"
        )

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def start(self, device: str, threads: int | None = None) -> None:
        self._child = start_job(self.lease.spec, device, self._log_path(), threads=threads,
                                adapter_dir=self._adapter_dir())
        self._keeper.start()
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
            self._keeper.close()
            self._on_end.set()

    def _follow_child(self) -> dict[str, Any] | None:
        assert self._child is not None
        final: dict[str, Any] | None = None
        for event in self._child.events():  # ends when the child closes its end: it exited
            self._at.setdefault("child_ready", time.monotonic())
            kind = event.get("event")
            if kind == "allocated":
                self.allocated = True
            elif kind == "metrics":
                self._keeper.add_points(event.get("points") or [])
            elif kind in ("result", "error"):
                final = event
                self._at["child_end"] = time.monotonic()
        code = self._child.wait()
        # A job that finished just as the drain ended is reported, not given back.
        if self._stop_reason and not (self._stop_reason == "released" and final):
            self._end_stopped()
            return None
        return self._report(final, code)

    def _report(self, final: dict[str, Any] | None, exit_code: int) -> dict[str, Any]:
        if final and final["event"] == "result" and exit_code == 0:
            return {"outcome": "complete", "result": final.get("result") or {}}
        if final and final["event"] == "error":
            error = final.get("error") or "the job failed"
        else:
            error = f"the job's process exited with code {exit_code}{self._log_tail()}"
        return {"outcome": "fail", "error": error}

    def _deliver(self, report: dict[str, Any]) -> None:
        if self._keeper.finish(report["outcome"], result=report.get("result"),
                               error=report.get("error"), adapter_dir=self._adapter_dir()):
            self._at["reported"] = time.monotonic()
        # The spool holds the adapter's zip now (or the job saved none).
        shutil.rmtree(self._adapter_dir(), ignore_errors=True)
        # Done only now: the job's memory is offered again once the API, too, saw the job end.
        self.outcome = report["outcome"]

    def _end_stopped(self) -> None:
        self.outcome = self._stop_reason
        if self._stop_reason == "released":
            self._keeper.release()
        else:
            self._keeper.close()

    def _adapter_dir(self) -> Path:
        return self._log_dir / f"job-{self.lease.job_id}-attempt{self.lease.attempt}-adapter"

    def _log_path(self) -> Path:
        return self._log_dir / f"job-{self.lease.job_id}-attempt{self.lease.attempt}.log"

    def _log_tail(self) -> str:
        try:
            tail = self._log_path().read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return ": " + " | ".join(tail) if tail else ""

