"""Claimed jobs from start to reported end: one child process per pack, one lease keeper per job.

Every job runs in a pack (``worker.child``): k >= 1 compatible train jobs in one process over one
frozen backbone (``tenslora.training.run_pack``), or a synthetic job alone. ``start`` starts the
child in the calling thread (the parent-death signal follows the thread that forked, and the
actor's loop thread outlives its jobs); a thread of its own then follows the child's events
while each job's lease keeper (``worker.lease``) heartbeats and forwards its metric batches. As
each job ends, its ``protocol.report.JobReport`` is spooled and sent, so a finished run survives
an unreachable API or a dying worker. ``tenslora-worker``'s actors and Ray Tune trials
(``worker.tune_trial``) both supervise their jobs with a ``RunningPack``.

Jobs of a pack stay independent: each has its own lease, metrics, report and attempt. A job
whose sweep is cancelled (or whose lease is lost) leaves the pack at its next step while the
others go on; once no job of the process is left to run, the process is killed. A crash of the
process fails every job that had not ended yet.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, Lease
from protocol.report import JobReport
from protocol.vocabulary import Outcome
from worker.child import JobProcess, start_pack
from worker.lease import LeaseKeeper
from worker.spool import Spool

log = logging.getLogger(__name__)

STOPPED_REPORT_RETRY_S = 5.0  # a pack stopped with a failure is being torn down: report quickly

#: ``on_points(index, points)``: job ``index``'s metric points, as they come (supervisor thread).
PointsHook = Callable[[int, list[dict[str, Any]]], None]


@dataclass
class JobSlot:
    """One job of the pack: its lease keeper, what the child said, and how the job ended."""

    lease: Lease
    keeper: LeaseKeeper
    report: JobReport | None = None  # the child's word on its end, or the failure it met
    leaving: bool = False  # asked to stop (cancelled, lease lost)
    outcome: Outcome | None = None  # set once settled: reported, or why not
    stored: bool = False  # the API took its report (else it waits in the spool)
    delivery: threading.Thread | None = None
    at: dict[str, float] = field(default_factory=dict)


class RunningPack:
    def __init__(
        self,
        leases: Sequence[Lease],
        reserved_mb: int,
        client: ApiClient,
        spool: Spool,
        log_dir: Path,
        on_end: threading.Event,
        *,
        claim_sent_at: float | None = None,
        pack_id: str | None = None,
        on_points: PointsHook | None = None,
        report_patience_s: float = 0.0,
    ) -> None:
        """``report_patience_s``: how long a report the API cannot take is resent, lease kept,
        before it is left in the spool."""
        self.leases, self.pack_id = list(leases), pack_id
        self.reserved_mb = reserved_mb
        self.allocated = False  # set once the child reports its memory is held
        # Monotonic instants for the overhead benchmark: claim sent, child running, child done,
        # report taken by the API.
        self._at: dict[str, float] = {"claim": claim_sent_at or time.monotonic()}
        self._log_dir, self._on_end = log_dir, on_end
        self._on_points, self._patience_s = on_points, report_patience_s
        self.slots = [
            JobSlot(lease, LeaseKeeper(client, lease, spool, on_stop=self._stopper(index)))
            for index, lease in enumerate(self.leases)
        ]
        self._stop_reason: Outcome | None = None
        self._lock = threading.Lock()
        self._child: JobProcess | None = None
        self._thread = threading.Thread(
            target=self._supervise, daemon=True, name=f"pack-{self.leases[0].job_id}"
        )

    @property
    def lease(self) -> Lease:
        """The first (for a pack of one, the only) lease."""
        return self.leases[0]

    @property
    def done(self) -> bool:
        return all(slot.outcome is not None for slot in self.slots) and not self._thread.is_alive()

    def start(self, device: str, threads: int | None = None) -> None:
        folders = [_adapter_dir(self._log_dir, lease) for lease in self.leases]
        self._child = start_pack([lease.spec for lease in self.leases], device, self._log_path(),
                                 threads=threads, adapter_dirs=folders)
        for slot in self.slots:
            slot.keeper.start()
        self._thread.start()

    def stop(self, reason: Outcome, error: str = "") -> None:
        """Kills the process; every job it had not ended yet ends ``reason``: ``released``
        gives its lease back, ``lost`` lets it run out (both once the process is gone), and
        ``failed`` reports ``error`` at once, from the calling thread: a Ray Tune trial that
        stops one has moments left before its actor goes."""
        self._stop_reason = reason
        if self._child:
            self._child.kill()
        if reason is Outcome.failed:
            for slot in self.slots:
                if self._take(slot, _report(slot.lease, Outcome.failed, None, error)):
                    self._deliver(slot, STOPPED_REPORT_RETRY_S)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def timings(self) -> list[dict[str, Any]]:
        """Scheduling overhead of each job: claim to child running, child done to report taken."""
        def span(at: dict[str, float], start: str, end: str) -> float | None:
            return round(at[end] - at[start], 4) if start in at and end in at else None

        return [
            {
                "job_id": slot.lease.job_id,
                "attempt": slot.lease.attempt,
                "pack_id": self.pack_id,
                "outcome": slot.outcome,
                "claim_to_start_s": span(self._at, "claim", "child_ready"),
                "end_to_stored_s": span(slot.at, "child_end", "reported"),
            }
            for slot in self.slots
        ]

    # ---- the supervising thread ------------------------------------------------------------

    def _stopper(self, index: int) -> Callable[[Outcome], None]:
        """The one way a job leaves early (from its keeper's thread: cancelled, lease lost)."""
        def on_stop(reason: Outcome) -> None:
            self.slots[index].leaving = True
            if not self._child:
                return
            if all(slot.leaving or slot.report is not None for slot in self.slots):
                self._child.kill()  # no job of it is left to run
            else:
                log.info("job %s leaves its pack: %s", self.slots[index].lease.job_id, reason)
                self._child.stop_job(index)

        return on_stop

    def _supervise(self) -> None:
        try:
            code = self._follow_child()
            for slot in self.slots:
                if slot.report is None:
                    self._settle(slot, code)
            for slot in self.slots:
                if slot.delivery is not None:
                    slot.delivery.join()
        except Exception:  # a supervisor must never die silently with jobs in hand
            log.exception("job %s: supervisor failed", self.lease.job_id)
            for slot in self.slots:
                slot.outcome = slot.outcome or Outcome.failed
        finally:
            if self._child:
                self._child.kill()
            for slot in self.slots:
                slot.keeper.close()
            self._on_end.set()

    def _follow_child(self) -> int:
        assert self._child is not None
        for event in self._child.events():  # ends when the child closes its end: it exited
            self._at.setdefault("child_ready", time.monotonic())
            kind, index = event.get("event"), event.get("job")
            if kind == "allocated":
                self.allocated = True
            elif not isinstance(index, int) or not 0 <= index < len(self.slots):
                continue
            elif kind == "metrics":
                points = event.get("points") or []
                self.slots[index].keeper.add_points(points)
                if self._on_points is not None:
                    self._on_points(index, points)
            elif kind == "end":
                slot = self.slots[index]
                ending = _report(slot.lease, Outcome(event["outcome"]), event.get("result"),
                                 event.get("error"))
                if self._take(slot, ending):
                    slot.at["child_end"] = time.monotonic()
                    self._deliver_soon(slot)  # the others may still train: report this one now
        return self._child.wait()

    def _settle(self, slot: JobSlot, exit_code: int) -> None:
        """The end of a job the child did not report: how it was stopped, else a failure."""
        reason = slot.keeper.stop_reason or self._stop_reason
        if reason is Outcome.failed:
            return  # ``stop`` reports it, from its own thread
        if reason in (Outcome.cancelled, Outcome.lost, Outcome.released):
            slot.outcome = reason
            if reason is Outcome.released:
                slot.keeper.release()
            else:  # the API already knows, or the lease is another's
                slot.keeper.close()
            return
        process = "the pack's process" if self.pack_id else "the job's process"
        error = f"{process} exited with code {exit_code}{self._log_tail()}"
        if self._take(slot, _report(slot.lease, Outcome.failed, None, error)):
            self._deliver(slot)

    def _take(self, slot: JobSlot, report: JobReport) -> bool:
        """Makes ``report`` the job's, unless it has one: the child's word and a stop race."""
        with self._lock:
            if slot.report is not None:
                return False
            slot.report = report
            return True

    def _deliver_soon(self, slot: JobSlot) -> None:
        slot.delivery = threading.Thread(
            target=self._deliver, args=(slot,), daemon=True, name=f"report-{slot.lease.job_id}",
        )
        slot.delivery.start()

    def _deliver(self, slot: JobSlot, retry_for_s: float | None = None) -> None:
        report = slot.report
        assert report is not None
        if slot.keeper.stop_reason or report.outcome is Outcome.cancelled:
            slot.outcome = slot.keeper.stop_reason or Outcome.cancelled
            slot.keeper.close()  # the API already knows: the sweep was cancelled or the lease lost
            return
        folder = _adapter_dir(self._log_dir, slot.lease)
        slot.stored = slot.keeper.finish(report, adapter_dir=folder, retry_for_s=retry_for_s,
                                         keep_trying_s=self._patience_s)
        if slot.stored:
            slot.at["reported"] = time.monotonic()
        # The spool holds the adapter's zip now (or the job saved none).
        shutil.rmtree(folder, ignore_errors=True)
        # Done only now: the job's memory is offered again once the API, too, saw the job end.
        slot.outcome = report.outcome

    def _log_path(self) -> Path:
        first = self.lease
        name = f"pack-{self.pack_id}" if self.pack_id else f"job-{first.job_id}"
        return self._log_dir / f"{name}-attempt{first.attempt}.log"

    def _log_tail(self) -> str:
        try:
            tail = self._log_path().read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return ": " + " | ".join(tail) if tail else ""


def _report(lease: Lease, outcome: Outcome, result: dict[str, Any] | None,
            error: str | None) -> JobReport:
    return JobReport(lease.job_id, lease.lease_id, lease.attempt, outcome,
                     result=dict(result or {}), error=error or "")


def _adapter_dir(log_dir: Path, lease: Lease) -> Path:
    """Where the child saves the job's trained adapter until its report takes it."""
    return log_dir / f"job-{lease.job_id}-attempt{lease.attempt}-adapter"
