"""Claimed jobs from start to reported end: one child process, one lease keeper per job.

A ``RunningJob`` is one job alone or a pack (``tenslora.training.run_pack``: k compatible train
jobs in one process over one frozen backbone). ``start`` starts the child in the calling thread
(the parent-death signal follows the thread that forked, and the actor's loop thread outlives
its jobs); a thread of its own then follows the child's events while each job's lease keeper
(``worker.lease``) heartbeats, forwards its metric batches and, when the job ends, spools its
report before sending it, so a finished run survives an unreachable API or a dying worker.

Jobs of a pack stay independent: each has its own lease, metrics, result and attempt. A job
whose sweep is cancelled (or whose lease is lost) leaves the pack at its next step while the
others go on; a crash of the pack's process fails every job that had not reported yet.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.client import ApiClient, Lease
from worker.child import JobProcess, start_job, start_pack
from worker.lease import LeaseKeeper
from worker.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One job of the running process: its lease keeper and how it ended."""

    lease: Lease
    keeper: LeaseKeeper
    final: dict[str, Any] | None = None  # the child's result / error / cancelled event
    outcome: str | None = None  # complete | fail | cancelled | lost | released
    delivery: threading.Thread | None = None
    at: dict[str, float] = field(default_factory=dict)


class RunningJob:
    def __init__(
        self,
        leases: Lease | Sequence[Lease],
        reserved_mb: int,
        client: ApiClient,
        spool: Spool,
        log_dir: Path,
        on_end: threading.Event,
        claim_sent_at: float | None = None,
        pack_id: str | None = None,
    ) -> None:
        leases = [leases] if isinstance(leases, Lease) else list(leases)
        self.leases, self.pack_id = leases, pack_id
        self.reserved_mb = reserved_mb
        self.allocated = False  # set once the child reports its memory is held
        # Monotonic instants for the overhead benchmark: claim sent, child running, child done,
        # report taken by the API.
        self._at: dict[str, float] = {"claim": claim_sent_at or time.monotonic()}
        self._log_dir, self._on_end = log_dir, on_end
        self._slots = [
            _Slot(lease, LeaseKeeper(client, lease, spool, on_stop=self._stopper(index)))
            for index, lease in enumerate(leases)
        ]
        self._stop_reason: str | None = None
        self._child: JobProcess | None = None
        self._thread = threading.Thread(
            target=self._supervise, daemon=True, name=f"job-{leases[0].job_id}"
        )

    @property
    def lease(self) -> Lease:
        """The first (for a job alone, the only) lease."""
        return self.leases[0]

    @property
    def done(self) -> bool:
        return all(slot.outcome is not None for slot in self._slots) and not self._thread.is_alive()

    def start(self, device: str, threads: int | None = None) -> None:
        specs = [lease.spec for lease in self.leases]
        folders = [_adapter_dir(self._log_dir, lease) for lease in self.leases]
        log_path = self._log_path()
        if len(specs) == 1:
            self._child = start_job(specs[0], device, log_path, threads=threads,
                                    adapter_dir=folders[0])
        else:
            self._child = start_pack(specs, device, log_path, threads=threads,
                                     adapter_dirs=folders)
        for slot in self._slots:
            slot.keeper.start()
        self._thread.start()

    def stop(self, reason: str) -> None:
        """Ends the child and every job in it; ``released`` also gives the leases back."""
        self._stop_reason = reason
        if self._child:
            self._child.kill()

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
            for slot in self._slots
        ]

    # ---- the supervising thread ------------------------------------------------------------

    def _stopper(self, index: int) -> Any:
        def on_stop(reason: str) -> None:
            if len(self._slots) == 1:
                self.stop(reason)
            elif self._child:  # the pack goes on without this job
                log.info("job %s leaves its pack: %s", self._slots[index].lease.job_id, reason)
                self._child.stop_job(index)

        return on_stop

    def _supervise(self) -> None:
        try:
            code = self._follow_child()
            for slot in self._slots:
                if slot.outcome is None and slot.delivery is None:
                    self._settle(slot, code)
            for slot in self._slots:
                if slot.delivery is not None:
                    slot.delivery.join()
        except Exception:  # a supervisor must never die silently with jobs in hand
            log.exception("job %s: supervisor failed", self.lease.job_id)
            for slot in self._slots:
                slot.outcome = slot.outcome or "fail"
        finally:
            if self._child:
                self._child.kill()
            for slot in self._slots:
                slot.keeper.close()
            self._on_end.set()

    def _follow_child(self) -> int:
        assert self._child is not None
        for event in self._child.events():  # ends when the child closes its end: it exited
            self._at.setdefault("child_ready", time.monotonic())
            kind = event.get("event")
            index = event.get("job", 0)
            if kind == "allocated":
                self.allocated = True
                continue
            if not isinstance(index, int) or not 0 <= index < len(self._slots):
                continue
            slot = self._slots[index]
            if kind == "metrics":
                slot.keeper.add_points(event.get("points") or [])
            elif kind in ("result", "error", "cancelled"):
                slot.final = event
                slot.at["child_end"] = time.monotonic()
                if len(self._slots) > 1:  # the others still train: report this one now
                    self._deliver_soon(slot, exit_code=0)
        return self._child.wait()

    def _settle(self, slot: _Slot, exit_code: int) -> None:
        """The end of a job whose outcome the child's exit decides."""
        # A job that finished just as the drain ended is reported, not given back.
        if self._stop_reason and not (self._stop_reason == "released" and slot.final):
            slot.outcome = self._stop_reason
            if self._stop_reason == "released":
                slot.keeper.release()
            else:
                slot.keeper.close()
            return
        self._deliver(slot, exit_code)

    def _deliver_soon(self, slot: _Slot, exit_code: int) -> None:
        slot.delivery = threading.Thread(
            target=self._deliver, args=(slot, exit_code), daemon=True,
            name=f"report-{slot.lease.job_id}",
        )
        slot.delivery.start()

    def _deliver(self, slot: _Slot, exit_code: int) -> None:
        final = slot.final
        if (final and final["event"] == "cancelled") or slot.keeper.stop_reason:
            slot.outcome = slot.keeper.stop_reason or "cancelled"
            slot.keeper.close()  # the API already knows: the sweep was cancelled or the lease lost
            return
        if final and final["event"] == "result" and exit_code == 0:
            report: dict[str, Any] = {"outcome": "complete", "result": final.get("result") or {}}
        elif final and final["event"] == "error":
            report = {"outcome": "fail", "error": final.get("error") or "the job failed"}
        else:
            process = "the pack's process" if len(self._slots) > 1 else "the job's process"
            report = {"outcome": "fail",
                      "error": f"{process} exited with code {exit_code}{self._log_tail()}"}
        folder = _adapter_dir(self._log_dir, slot.lease)
        if slot.keeper.finish(report["outcome"], result=report.get("result"),
                              error=report.get("error"), adapter_dir=folder):
            slot.at["reported"] = time.monotonic()
        # The spool holds the adapter's zip now (or the job saved none).
        shutil.rmtree(folder, ignore_errors=True)
        # Done only now: the job's memory is offered again once the API, too, saw the job end.
        slot.outcome = report["outcome"]

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


def _adapter_dir(log_dir: Path, lease: Lease) -> Path:
    """Where the child saves the job's trained adapter until its report takes it."""
    return log_dir / f"job-{lease.job_id}-attempt{lease.attempt}-adapter"
