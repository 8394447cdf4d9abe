"""One job in its own process, so that a crash, an OOM or a hang cannot take the actor down.

The parent side (``start_job``) starts ``python -m worker.child`` in a new process group, writes
the spec on its stdin and keeps stdin open: the child dies when the parent does, through the
parent-death signal and, should that be missed, through end-of-file on stdin. The child speaks
back in JSON lines on a pipe of its own (stdout and stderr go to the job's log file, where library
chatter cannot corrupt the protocol):

    {"event": "allocated"}                      memory is now held (first training step done)
    {"event": "metrics", "points": [...]}       a batch of {step, name, value}
    {"event": "result", "result": {...}}        success; the child then exits 0
    {"event": "error", "error": "..."}          failure; the child then exits non-zero

A pack (``start_pack``: ``{"pack": [spec, ...]}`` on stdin) trains its jobs in this one process
(``tenslora.training.run_pack``); its metrics, results and errors carry ``"job": index``, and a
job that ended early says so with ``{"event": "cancelled", "job": index}``. The parent stops one
job of a running pack by writing ``{"stop": index}`` on stdin; the others go on. The child
exits 0 once every job of the pack has reported.

A train job given an adapter folder (``--adapter-dir``; for a pack, ``adapter_dirs`` beside the
specs) saves its trained adapter there, with its mode analysis, before its result.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
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

PR_SET_PDEATHSIG = 1
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


def start_job(
    spec: dict[str, Any],
    device: str,
    log_path: Path,
    *,
    threads: int | None = None,
    adapter_dir: Path | None = None,
) -> JobProcess:
    """Starts the child for ``spec`` on ``device`` (``cuda`` or ``cpu``); output to ``log_path``.

    A train job that succeeds leaves its adapter (``save_adapter``'s files and the mode
    analysis) in ``adapter_dir``."""
    flags = ["--adapter-dir", str(adapter_dir)] if adapter_dir else []
    return _start(spec, device, log_path, threads, flags)


def start_pack(
    specs: list[dict[str, Any]],
    device: str,
    log_path: Path,
    *,
    threads: int | None = None,
    adapter_dirs: list[Path] | None = None,
) -> JobProcess:
    """Starts one child that trains ``specs`` as a pack; events carry each job's index.

    Job i's adapter, if it succeeds, goes to ``adapter_dirs[i]``."""
    document: dict[str, Any] = {"pack": specs}
    if adapter_dirs is not None:
        document["adapter_dirs"] = [str(folder) for folder in adapter_dirs]
    return _start(document, device, log_path, threads, [])


def _start(
    document: dict[str, Any], device: str, log_path: Path, threads: int | None, flags: list[str]
) -> JobProcess:
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.child", "--events-fd", str(write_fd),
             "--device", device, "--parent-pid", str(os.getpid()), *flags],
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
    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **_finite(fields)}, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _arm_parent_death_signal(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(70)


def _watch_stdin(stopped: set[int] | None = None) -> None:
    """Backs the parent-death signal up (it follows the thread that forked, not the process).

    Also reads the parent's ``{"stop": index}`` lines into ``stopped`` (a pack's jobs to drop).
    """

    def watch() -> None:
        for line in sys.stdin.buffer:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                index = json.loads(line).get("stop")
                if stopped is not None and isinstance(index, int):
                    stopped.add(index)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def run_synthetic(spec: dict[str, Any], events: _Events) -> dict[str, Any]:
    """Sleeps ``duration_s`` and reports ``outcome``, or fails on purpose.

    Reads the plain dict (the API validated it): no pydantic import, so the child starts fast.
    """
    events.emit("allocated")
    deadline = time.monotonic() + float(spec.get("duration_s", 1.0))
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
    if spec.get("fail"):
        raise RuntimeError("synthetic job failed on purpose (fail: true)")
    return dict(spec.get("outcome") or {})


def run_train(
    spec: Any, events: _Events, device: str, adapter_dir: Path | None = None
) -> dict[str, Any]:
    """Trains; with ``adapter_dir``, saves the trained adapter there with its mode analysis."""
    from tenslora.training import run_training

    allocated = threading.Event()

    def mark_allocated(*_: Any, **__: Any) -> None:
        if not allocated.is_set():
            allocated.set()
            events.emit("allocated")

    def sink(points: list[dict[str, Any]]) -> None:
        mark_allocated()
        events.emit("metrics", points=list(points))

    result = run_training(spec, sink, device=device, progress=mark_allocated,
                          adapter_dir=adapter_dir)
    if adapter_dir is not None:
        _write_analysis(adapter_dir)
    return result


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


def run_pack(
    specs: list[Any],
    events: _Events,
    device: str,
    stopped: set[int],
    adapter_dirs: list[Path] | None = None,
) -> None:
    """Trains a pack; each job reports its own result, error or early end as it finishes."""
    from tenslora.training import JobSink
    from tenslora.training import run_pack as train_pack

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

    results = train_pack(specs, [job_sink(i) for i in range(len(specs))], device=device,
                         adapter_dirs=adapter_dirs)
    for index, outcome in enumerate(results):
        if outcome.status == "succeeded" and adapter_dirs:
            _write_analysis(adapter_dirs[index])
        if outcome.status == "succeeded":
            events.emit("result", job=index, result=outcome.metrics)
        elif outcome.status == "cancelled":
            events.emit("cancelled", job=index)
        else:
            events.emit("error", job=index, error=outcome.error or "failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.child")
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--adapter-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    _arm_parent_death_signal(args.parent_pid)
    events = _Events(args.events_fd)
    spec_line = sys.stdin.buffer.readline()
    stopped: set[int] = set()
    _watch_stdin(stopped)
    try:
        spec = json.loads(spec_line)
        if "pack" in spec:
            from tenslora.core.job_spec import parse_spec

            folders = [Path(folder) for folder in spec.get("adapter_dirs") or []] or None
            run_pack([parse_spec(one) for one in spec["pack"]], events, args.device, stopped,
                     folders)
            return 0
        if spec.get("kind") == "synthetic":
            result = run_synthetic(spec, events)
        else:
            from tenslora.core.job_spec import parse_spec

            result = run_train(parse_spec(spec), events, args.device, args.adapter_dir)
    except BaseException as error:  # report everything, including KeyboardInterrupt
        traceback.print_exc()
        events.emit("error", error=_describe(error))
        return 1
    events.emit("result", result=result)
    return 0


def _describe(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(error).__name__}: {error}{at}"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null rather than an invalid document."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter shutdown: the stdin watch thread blocks in a read it would trip over.
    os._exit(exit_code)
