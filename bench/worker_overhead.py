"""Scheduling overhead of tenslora-worker and the makespan of a packed sweep against the ideal.

Starts the real server (SQLite) and a real worker on fake GPUs, runs a sweep of synthetic jobs of
mixed memory and duration, and prints:
- per job, claim request -> child process running, and child done -> result stored by the API
  (measured in the worker, written through ``--stats-file``);
- the makespan (first claim to last result, server clock) against the ideal
  sum(duration x memory) / total memory, i.e. every MiB of every GPU busy all the time.
Goals: overhead < 1 s per job, makespan within 10% of the ideal.

    python bench/worker_overhead.py [--jobs 96] [--gpus 2x8000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.local_cluster import LocalCluster

DURATIONS_S = (3.0, 4.0, 5.0)
MEMORY_MB = (2000, 4000)


def sweep(n_jobs: int) -> dict:
    configs = [
        {"duration_s": DURATIONS_S[i % len(DURATIONS_S)],
         "memory_mb": MEMORY_MB[(i // len(DURATIONS_S)) % len(MEMORY_MB)], "seed": i}
        for i in range(n_jobs)
    ]
    return {"name": "overhead", "base": {"kind": "synthetic"}, "configs": configs}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"mean {statistics.mean(ordered):.3f} s, p50 {statistics.median(ordered):.3f} s, "
            f"p95 {p95:.3f} s, max {ordered[-1]:.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=96)
    parser.add_argument("--gpus", default="2x8000", help="fake GPUs, e.g. 2x8000")
    args = parser.parse_args()
    n_gpus, gpu_mb = (int(part) for part in args.gpus.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="tl-overhead-"))
    stats_file = folder / "stats.json"
    cluster = LocalCluster(folder, 0, ["--fake-gpus", args.gpus, "--reserve-mb", "0",
                                       "--poll-interval", "1", "--stats-file", str(stats_file)])
    try:
        cluster.start()
        sweep_id = cluster.submit(sweep(args.jobs))
        cluster.follow(sweep_id, deadline=time.monotonic() + 600)
        jobs = cluster.jobs(sweep_id)
    finally:
        cluster.stop()  # the worker writes its stats file as it exits

    assert all(job["status"] == "succeeded" for job in jobs), "some jobs did not succeed"
    timings = json.loads(stats_file.read_text())["jobs"]
    to_start = [t["claim_to_start_s"] for t in timings if t["claim_to_start_s"] is not None]
    to_stored = [t["end_to_stored_s"] for t in timings if t["end_to_stored_s"] is not None]
    started = [datetime.fromisoformat(job["started_at"]) for job in jobs]
    finished = [datetime.fromisoformat(job["finished_at"]) for job in jobs]
    makespan = (max(finished) - min(started)).total_seconds()
    work = sum(job["config"]["duration_s"] * job["config"]["memory_mb"] for job in jobs)
    ideal = work / (n_gpus * gpu_mb)
    per_job = [
        (f - s).total_seconds() - job["config"]["duration_s"]
        for job, s, f in zip(jobs, started, finished, strict=True)
    ]
    print(f"{len(jobs)} synthetic jobs ({DURATIONS_S} s x {MEMORY_MB} MiB) on {args.gpus} fake"
          " GPUs")
    print(f"claim -> child running:      {summary(to_start)}")
    print(f"child done -> result stored: {summary(to_stored)}")
    print(f"claim -> stored minus the job's own time (server clock): {summary(per_job)}")
    print(f"makespan {makespan:.1f} s, ideal {ideal:.1f} s: ratio {makespan / ideal:.3f}")
    # While jobs were still queued (up to the last claim), how much of the memory was busy: the
    # worker's own efficiency, without the tail where too little work is left to fill the GPUs.
    t0, last_claim = min(started), max(started)
    window = (last_claim - t0).total_seconds()
    busy = sum(
        job["config"]["memory_mb"]
        * max(0.0, (min(f, last_claim) - s).total_seconds())
        for job, s, f in zip(jobs, started, finished, strict=True)
    )
    print(f"memory busy while jobs were queued: {100 * busy / (n_gpus * gpu_mb * window):.1f}% "
          f"(first {window:.1f} s); the tail after the last claim: "
          f"{(max(finished) - last_claim).total_seconds():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
