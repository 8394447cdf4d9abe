"""What `tenslora sweep tune` costs per job on top of the job itself.

Starts the real server on a fresh SQLite file, then runs a sweep of N synthetic jobs of D seconds
as Ray Tune trials on a local Ray with C CPUs (one CPU per trial), and prints the makespan
against the ideal N x D / C, and the overhead per job, (makespan - ideal) x C / N. Ray's own
start-up is timed apart. Run from the repository root:

    python bench/tune_overhead.py --jobs 16 --duration 2 --cpus 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.server import mint_tokens, sqlite_url, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from worker.tune import TuneOptions, run_tune

    with tempfile.TemporaryDirectory() as folder:
        database_url = sqlite_url(Path(folder))
        token = mint_tokens(database_url, ("admin",))["admin"]
        server = start_server(database_url, Path(folder) / "server.log")
        url = server.url
        try:
            started = time.monotonic()
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=200 * 1024**2)
            ray_start_s = time.monotonic() - started
            sweep = {"name": "bench", "base": {"kind": "synthetic", "duration_s": args.duration,
                                               "memory_mb": 10, "outcome": {"accuracy": 1.0}},
                     "grid": {"seed": list(range(args.jobs))}}
            started = time.monotonic()
            summary = run_tune(sweep, url, token, options=TuneOptions(
                storage_path=str(Path(folder) / "tune")))
            makespan = time.monotonic() - started
            ray.shutdown()
        finally:
            server.stop()
    ideal = args.jobs * args.duration / args.cpus
    print(f"jobs {args.jobs} x {args.duration:g} s on {args.cpus} CPUs: {summary.counts}")
    print(f"ray start {ray_start_s:.1f} s (not counted below)")
    print(f"makespan {makespan:.1f} s, ideal {ideal:.1f} s, ratio {makespan / ideal:.2f}")
    print(f"overhead per job {(makespan - ideal) * args.cpus / args.jobs:.2f} s")


if __name__ == "__main__":
    main()
