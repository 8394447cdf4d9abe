"""Server time to render the sweep page of a large finished sweep, on SQLite.

Stores a sweep of N finished jobs (default 2,000), each with a 10-number result and P metric
points (default 200), through the scheduler's own functions (create, claim, metrics, complete),
then times GET /sweeps/{id} through the real app in-process (no network) and the results query
it is built on. Goal: the page in under 0.5 s.

    python bench/dashboard_render.py [--jobs 2000] [--points 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from api.app import create_app
from scheduler.db import Database
from scheduler.metrics import MetricPoint, add_metrics
from scheduler.migrate import upgrade
from scheduler.queue import claim_job, complete_job
from scheduler.results import aggregate_results
from scheduler.settings import Settings
from scheduler.sweeps import create_sweep
from scheduler.tokens import create_token
from tenslora.core.metric_contract import GRAD_NORM, LR, SPECTRUM_METRICS, TRAIN_LOSS, metric_name

GOAL_S = 0.5
METHODS = ("att", "qkv", "depth", "att_qkv", "att_depth", "qkv_depth", "att_qkv_depth")
TAGS = ("lora", "lora-r8", *(f"{m}-isorank" for m in METHODS),
        *(f"{m}-isoparams" for m in METHODS))
_ENTROPY, _TOP1 = SPECTRUM_METRICS["entropy"], SPECTRUM_METRICS["top1_energy"]
NAMES = (TRAIN_LOSS, metric_name(LR, "factors"), metric_name(LR, "core"),
         *(metric_name(GRAD_NORM, mode) for mode in ("Input", "Output", "QKV", "Core")),
         metric_name(_ENTROPY, "Input"), metric_name(_TOP1, "Input"), metric_name(_ENTROPY, "QKV"))


def result_of(seed: int, tag_index: int) -> dict[str, float]:
    accuracy = 0.78 + 0.003 * tag_index + 0.001 * (seed % 7)
    return {
        "accuracy": accuracy, "mcc": 2 * accuracy - 1, "f1": accuracy - 0.01,
        "best_accuracy": accuracy + 0.005, "best_mcc": 2 * accuracy - 0.99,
        "adapter_params": 5_000.0 + 13_000 * tag_index,
        "trainable_params": 6_000.0 + 13_000 * tag_index,
        "wall_s": 300.0 + seed, "samples_per_s": 120.0 - tag_index, "peak_memory_mb": 2_400.0,
    }


def populate(database: Database, n_jobs: int, n_points: int) -> int:
    seeds = -(-n_jobs // len(TAGS))
    with database.session() as session:
        configs = [{"tag": tag, "seed": seed} for seed in range(seeds) for tag in TAGS][:n_jobs]
        view = create_sweep(session, "bench", {"kind": "synthetic", "memory_mb": 1},
                            configs=configs, max_jobs=n_jobs)
    points = [
        MetricPoint(step=10 * (i // len(NAMES)), name=NAMES[i % len(NAMES)], value=1.0 / (i + 1))
        for i in range(n_points)
    ]
    batch = 100
    for start in range(0, n_jobs, batch):
        with database.session() as session:
            for _ in range(min(batch, n_jobs - start)):
                claim = claim_job(session, "bench-worker", "cuda:0", 10_000, 600.0, 3)
                assert claim is not None
                config = claim.job.config
                add_metrics(session, claim.job.id, claim.lease_id, points)
                complete_job(session, claim.job.id, claim.lease_id,
                             result_of(config["seed"], TAGS.index(config["tag"])))
    return view.sweep.id


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        database = Database(url)
        start = time.perf_counter()
        sweep_id = populate(database, args.jobs, args.points)
        with database.session() as session:
            token = create_token(session, "admin", "bench")
        print(f"stored {args.jobs} finished jobs x {args.points} metric points "
              f"in {time.perf_counter() - start:.1f} s")

        def query() -> None:
            with database.session(write=False) as session:
                aggregate_results(session, sweep_id, ["tag"])

        with TestClient(create_app(Settings(database_url=url))) as client:
            client.post("/login", data={"token": token, "next": "/"})
            pages = {
                "sweep page (group_by=tag, metrics as columns)": f"/sweeps/{sweep_id}",
                "sweep page (tasks as columns)": f"/sweeps/{sweep_id}?columns=tasks",
                "sweep page, failed-jobs filter": f"/sweeps/{sweep_id}?status=failed",
                "sweeps list": "/",
                f"job page ({args.points} metric points, 5 plots)": f"/jobs/{args.jobs // 2}",
            }
            for path in pages.values():  # warm caches (templates, plotly import)
                assert client.get(path).status_code == 200
            rows = [("results query alone (aggregate_results, group_by=tag)",
                     timed(query, args.repeat))]
            for label, path in pages.items():
                rows.append((label, timed(lambda p=path: client.get(p), args.repeat)))
        database.dispose()
    print(f"\n{'what':58} {'median s':>9} {'max s':>7} {'goal ratio':>10}")
    for label, times in rows:
        median = statistics.median(times)
        print(f"{label:58} {median:9.3f} {max(times):7.3f} {median / GOAL_S:10.2f}")
    print(f"\ngoal ratio = median / {GOAL_S} s (below 1 meets the goal); "
          f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
