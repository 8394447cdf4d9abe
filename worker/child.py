"""A pack of jobs in its own process, so that a crash, an OOM or a hang cannot take the actor down.

Every job runs in a pack: k >= 1 train jobs of one pack key (``tenslora.training.run_pack``), or a
synthetic job alone. The parent side (``start_pack``) starts ``python -m worker.child`` in a new
process group, writes ``{"pack": [spec, ...], "adapter_dirs": [...]}`` on its stdin and keeps
stdin open: the child dies when the parent does, through the parent-death signal and, should that
be missed, through end-of-file on stdin. The child speaks back in JSON lines on a pipe of its own
(stdout and stderr go to the pack's log file, where library chatter cannot corrupt the protocol);
``job`` is the job's index in the pack:

    {"event": "allocated"}                                  memory is now held (first step done)
    {"event": "metrics", "job": i, "points": [...]}         a batch of {step, name, value}
    {"event": "end", "job": i, "outcome": "succeeded", "result": {...}}
    {"event": "end", "job": i, "outcome": "failed", "error": "..."}
    {"event": "end", "job": i, "outcome": "cancelled"}       it left the pack when asked

Outcomes are ``protocol.vocabulary.Outcome``'s words. The one way to stop a job is
``JobProcess.stop_job(i)`` (``{"stop": i}`` on stdin): it leaves the pack at its next step while
the others go on. The child exits 0 once every job has ended, 1 if the pack itself failed (then
every job not ended yet ends ``failed`` with the error). Job i, if it succeeds, saves its trained
adapter with its mode analysis in ``adapter_dirs[i]`` before its end.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.vocabulary import Outcome
from tenslora.core.finite import finite_json

PR_SET_PDEATHSIG = 1
SYNTHETIC_POLL_S = 0.25  # how soon a synthetic job notices it was stopped
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


class JobProcess:
    """The parent's handle on a running child: its events, and a way to end it."""

    def __init__(self, process: subprocess.Popen[bytes], events_fd: int) -> None:
        self.process = process
        self._events = os.fdopen(events_fd, "rb")

    def events(self) -> Iterator[dict[str, Any]]:
        """Blocks for each event until the child closes the pipe (exits)."""
        for line in self._events:
            with contextlib.suppress(ValueError):
                yield json.loads(line)

    def stop_job(self, index: int) -> None:
        """Asks a pack's child to drop job ``index`` at its next step (the others go on)."""
        if self.process.stdin:
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.write(json.dumps({"stop": index}).encode() + b"\n")
                self.process.stdin.flush()

    def kill(self) -> None:
        """Kills the child's whole process group (data loader workers included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._events.close()
        if self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        return code


def start_pack(
    specs: list[dict[str, Any]],
    device: str,
    log_path: Path,
    *,
    threads: int | None = None,
    adapter_dirs: list[Path] | None = None,
) -> JobProcess:
    """Starts one child that runs ``specs`` (on ``device``: ``cuda`` or ``cpu``) as a pack;
    output to ``log_path``. Job i's adapter, if it succeeds, goes to ``adapter_dirs[i]``."""
    document: dict[str, Any] = {"pack": specs}
    if adapter_dirs is not None:
        document["adapter_dirs"] = [str(folder) for folder in adapter_dirs]
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.child", "--events-fd", str(write_fd),
             "--device", device, "--parent-pid", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
            env=env,
        )
    os.close(write_fd)
    assert process.stdin is not None
    process.stdin.write(json.dumps(document).encode() + b"\n")
    process.stdin.flush()
    return JobProcess(process, read_fd)


# ---- the child's side --------------------------------------------------------------------------


class _Events:
    """The child's end of the events pipe; remembers which jobs have ended."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()
        self.ended: set[int] = set()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **finite_json(fields)}, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def end(self, job: int, outcome: Outcome, *, result: dict[str, Any] | None = None,
            error: str | None = None) -> None:
        """Job ``job``'s last event: ``succeeded`` with its result, ``failed`` with why."""
        self.ended.add(job)
        ending: dict[str, Any] = {}
        if outcome is Outcome.succeeded:
            ending["result"] = result or {}
        elif outcome is Outcome.failed:
            ending["error"] = error or "the job failed"
        self.emit("end", job=job, outcome=outcome.value, **ending)


def _arm_parent_death_signal(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(70)


def _watch_stdin(stopped: set[int]) -> None:
    """Reads the parent's ``{"stop": index}`` lines into ``stopped``; also backs the
    parent-death signal up (it follows the thread that forked, not the process)."""

    def watch() -> None:
        for line in sys.stdin.buffer:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                index = json.loads(line).get("stop")
                if isinstance(index, int):
                    stopped.add(index)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def run_synthetic(specs: list[dict[str, Any]], events: _Events, stopped: set[int]) -> None:
    """Each job sleeps its ``duration_s`` and reports its ``outcome``, or fails on purpose.

    Reads the plain dicts (the API validated them): no pydantic import, so the child starts fast.
    """
    events.emit("allocated")
    started = time.monotonic()
    deadlines = {index: started + float(spec.get("duration_s", 1.0))
                 for index, spec in enumerate(specs)}
    while deadlines:
        for index, deadline in sorted(deadlines.items()):
            if index in stopped:
                events.end(index, Outcome.cancelled)
            elif time.monotonic() >= deadline:
                spec = specs[index]
                if spec.get("fail"):
                    events.end(index, Outcome.failed,
                               error="synthetic job failed on purpose (fail: true)")
                else:
                    events.end(index, Outcome.succeeded, result=dict(spec.get("outcome") or {}))
            else:
                continue
            del deadlines[index]
        if deadlines:
            time.sleep(min(SYNTHETIC_POLL_S, max(0.0, min(deadlines.values()) - time.monotonic())))


def run_train(
    specs: list[dict[str, Any]],
    events: _Events,
    device: str,
    stopped: set[int],
    adapter_dirs: list[Path | None],
) -> None:
    """Trains the pack (``tenslora.training.run_pack``); each job reports its own end."""
    from tenslora.training import JobSink, run_pack

    allocated = threading.Event()

    def mark_allocated(*_: Any, **__: Any) -> None:
        if not allocated.is_set():
            allocated.set()
            events.emit("allocated")

    def job_sink(index: int) -> JobSink:
        def sink(points: list[dict[str, Any]]) -> None:
            mark_allocated()
            events.emit("metrics", job=index, points=list(points))

        return JobSink(sink, progress=mark_allocated, should_stop=lambda: index in stopped)

    results = run_pack(specs, [job_sink(index) for index in range(len(specs))], device=device,
                       adapter_dirs=adapter_dirs)
    for index, result in enumerate(results):
        outcome = Outcome(result.status)  # the library's words are the outcome's
        folder = adapter_dirs[index]
        if outcome is Outcome.succeeded and folder is not None:
            _write_analysis(folder)
        events.end(index, outcome, result=result.metrics, error=result.error)


def _write_analysis(adapter_dir: Path) -> None:
    """The adapter's HOSVD mode analysis beside it, for the dashboard's job page. Optional: a
    failure costs the page its table, never the run its result or adapter."""
    from tenslora.analysis.hosvd import adapter_mode_spectra
    from tenslora.core.metric_contract import ADAPTER_ANALYSIS_FILE

    try:
        analysis = adapter_mode_spectra(adapter_dir).to_json(indent=None)
    except Exception:
        traceback.print_exc()
        return
    (adapter_dir / ADAPTER_ANALYSIS_FILE).write_text(analysis)


def run(document: dict[str, Any], events: _Events, device: str, stopped: set[int]) -> None:
    """Runs the pack ``start_pack`` wrote: synthetic jobs, or train jobs of one pack key."""
    specs: list[dict[str, Any]] = document["pack"]
    folders: list[Path | None] = [Path(folder) for folder in document.get("adapter_dirs") or []]
    if all(spec.get("kind") == "synthetic" for spec in specs):
        run_synthetic(specs, events, stopped)
    else:
        run_train(specs, events, device, stopped, folders or [None] * len(specs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.child")
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _arm_parent_death_signal(args.parent_pid)
    events = _Events(args.events_fd)
    document_line = sys.stdin.buffer.readline()
    stopped: set[int] = set()
    _watch_stdin(stopped)
    n_jobs = 0
    try:
        document = json.loads(document_line)
        n_jobs = len(document["pack"])
        run(document, events, args.device, stopped)
    except BaseException as error:  # report everything, including KeyboardInterrupt
        traceback.print_exc()
        for job in sorted(set(range(n_jobs)) - events.ended):
            events.end(job, Outcome.failed, error=_describe(error))
        return 1
    return 0


def _describe(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(error).__name__}: {error}{at}"


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter shutdown: the stdin watch thread blocks in a read it would trip over.
    os._exit(exit_code)
