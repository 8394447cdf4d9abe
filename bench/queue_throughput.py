"""Queue throughput: N concurrent HTTP claimers (claim + complete) against the real server.

Starts `tenslora serve` on a fresh SQLite file and on a fresh Postgres (initdb + pg_ctl, when the
binaries are on PATH), queues --jobs synthetic jobs, and lets --claimers threads drain the queue.
Prints jobs/s and claim latency percentiles, and the ratio to the goal (300 jobs/s, max claim 1 s).
With --pack K the claimers take packs of up to K train jobs of one pack key
(POST /api/v1/jobs/claim-pack; goal 1,000 jobs/s on SQLite with 8 claimers), and each run also
drains a second queue claiming only (no completes) to show what the claim alone costs.

    python bench/queue_throughput.py --jobs 3000 --claimers 8
    python bench/queue_throughput.py --jobs 3000 --claimers 8 --pack 8 --backend sqlite

With --non-fitting N the queue first holds N jobs of a higher priority whose memory estimate no
claimer can meet (a big model waiting for a big GPU); the claimers drain the jobs that fit, then
poll the rest for --poll-seconds and report claims/s (each answered 204).

    python bench/queue_throughput.py --jobs 1000 --non-fitting 100000 --poll-seconds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, select

from launch.postgres import have_postgres, running_postgres
from launch.server import mint_tokens, start_server

GOAL_JOBS_PER_S = 300.0
GOAL_PACKED_JOBS_PER_S = 1000.0
# Train jobs share a pack key when only the seed differs (see tenslora/core/pack_key.py).
PACKABLE_JOB = {
    "kind": "train", "task": "synthetic_text", "backbone": "minilm",
    "train": {"max_steps": 1, "batch_size": 4, "max_length": 16},
}


@contextmanager
def server(database_url: str, folder: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    tokens = mint_tokens(database_url, ("submitter", "worker"))
    server = start_server(database_url, folder / "server.log")
    try:
        yield server.url, tokens, server.process.pid
    finally:
        server.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), load-independent cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _claim_leases(client: httpx.Client, body: dict, pack: int) -> list[dict] | None:
    """One claim: a list of leases ({job, lease_id, ...}), or None when nothing is queued."""
    if pack > 1:
        response = client.post("/api/v1/jobs/claim-pack", json={**body, "max_jobs": pack})
    else:
        response = client.post("/api/v1/jobs/claim", json=body)
    if response.status_code == 204:
        return None
    response.raise_for_status()
    answer = response.json()
    return answer["claims"] if pack > 1 else [answer]


def drain(
    url: str, token: str, claimers: int, pack: int = 1, complete: bool = True
) -> tuple[int, float, list[float]]:
    """Claimers claim (+ complete) until the queue is empty; returns (jobs, seconds, latencies)."""
    latencies: list[float] = []
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(index: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        body = {"worker_id": f"bench-{index}", "device": "cpu", "free_memory_mb": 10**6}
        mine, times = [], []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            while True:
                start = time.perf_counter()
                leases = _claim_leases(client, body, pack)
                times.append(time.perf_counter() - start)
                if leases is None:
                    break
                for lease in leases:
                    mine.append(lease["job"]["id"])
                    if complete:
                        client.post(
                            f"/api/v1/jobs/{lease['job']['id']}/complete",
                            json={"lease_id": lease["lease_id"], "result": {"accuracy": 1.0}},
                        ).raise_for_status()
        with lock:
            latencies.extend(times)
            claimed.extend(mine)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if len(claimed) != len(set(claimed)):
        raise AssertionError("a job was claimed twice")
    return len(claimed), elapsed, latencies


def _submit(url: str, token: str, jobs: int, pack: int) -> None:
    base = PACKABLE_JOB if pack > 1 else {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}
    sweep = {"name": "bench", "base": base, "grid": {"seed": list(range(jobs))}}
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{url}/api/v1/sweeps", json=sweep, headers=headers, timeout=300).raise_for_status()


# More than any claimer offers (they send 10**6 MiB free).
NON_FITTING_MB = 10**7


def _queue_non_fitting(url: str, token: str, database_url: str, count: int) -> None:
    """``count`` queued jobs that fit no claimer, ahead of the others in the claim order: one
    through the API, the rest copied in SQL (a sweep may hold at most 10,000 jobs)."""
    from scheduler.models import JOBS

    sweep = {"name": "too-big", "priority": 10, "base": {
        "kind": "synthetic", "duration_s": 0, "memory_mb": NON_FITTING_MB}}
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{url}/api/v1/sweeps", json=sweep, headers=headers,
               timeout=300).raise_for_status()
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            model = connection.execute(select(JOBS).where(
                JOBS.c.memory_estimate_mb >= NON_FITTING_MB)).mappings().one()
            copy = {k: v for k, v in model.items() if k != "id"}
            connection.execute(insert(JOBS), [
                {**copy, "spec_hash": f"{n:064d}"} for n in range(1, count)])
    finally:
        engine.dispose()


def poll(url: str, token: str, claimers: int, seconds: float) -> int:
    """Claims answered while ``claimers`` poll a queue where nothing fits, for ``seconds``."""
    counts = [0] * claimers

    def poller(index: int) -> None:
        body = {"worker_id": f"poll-{index}", "device": "cpu", "free_memory_mb": 10**6}
        end = time.perf_counter() + seconds
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as client:
            while time.perf_counter() < end:
                if client.post("/api/v1/jobs/claim", json=body).status_code != 204:
                    raise AssertionError("a job that does not fit was handed out")
                counts[index] += 1

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def run_non_fitting(
    backend: str, database_url: str, jobs: int, claimers: int, non_fitting: int, seconds: float
) -> None:
    with tempfile.TemporaryDirectory() as folder, server(database_url, Path(folder)) as (
        url, tokens, _pid
    ):
        _queue_non_fitting(url, tokens["submitter"], database_url, non_fitting)
        _submit(url, tokens["submitter"], jobs, 1)
        done, drain_s, latencies = drain(url, tokens["worker"], claimers)
        polls = poll(url, tokens["worker"], claimers, seconds)
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{backend:8s} {non_fitting} queued jobs that fit no claimer, claimers={claimers}: "
        f"{done / drain_s:7.1f} fitting jobs/s claimed and completed (claim p50="
        f"{quantiles[49] * 1000:.1f} ms p99={quantiles[98] * 1000:.1f} ms); then "
        f"{polls / seconds:7.1f} claims/s answered 204",
        flush=True,
    )


def run(backend: str, database_url: str, jobs: int, claimers: int, pack: int = 1) -> None:
    goal = GOAL_PACKED_JOBS_PER_S if pack > 1 else GOAL_JOBS_PER_S
    with tempfile.TemporaryDirectory() as folder, server(database_url, Path(folder)) as (
        url, tokens, pid
    ):
        _submit(url, tokens["submitter"], jobs, pack)
        cpu_before, client_before = cpu_seconds(pid), time.process_time()
        done, seconds, latencies = drain(url, tokens["worker"], claimers, pack)
        server_cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max(done, 1)
        client_cpu_ms = (time.process_time() - client_before) * 1000 / max(done, 1)
        _submit(url, tokens["submitter"], jobs, pack)
        claimed_only, claim_seconds, _ = drain(url, tokens["worker"], claimers, pack, False)
    quantiles = statistics.quantiles(latencies, n=100)
    rate = done / seconds
    kind = f"packs of {pack}" if pack > 1 else "single claims"
    print(
        f"{backend:8s} jobs={done} claimers={claimers} {kind}: {rate:7.1f} jobs/s claimed and "
        f"completed (x{rate / goal:.2f} of goal {goal:.0f}); claims alone "
        f"{claimed_only / claim_seconds:7.1f} jobs/s (x{claimed_only / claim_seconds / goal:.2f})\n"
        f"{'':8s} claim p50={quantiles[49] * 1000:.1f} ms "
        f"p99={quantiles[98] * 1000:.1f} ms max={max(latencies) * 1000:.1f} ms "
        f"(x{max(latencies):.2f} of the 1 s bound)\n"
        f"{'':8s} CPU per job: server {server_cpu_ms:.2f} ms, claimers {client_cpu_ms:.2f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--claimers", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pack", type=int, default=1, help="claim packs of up to N jobs")
    parser.add_argument("--non-fitting", type=int, default=0,
                        help="queue N higher-priority jobs that fit no claimer first")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    args = parser.parse_args()

    def one(backend: str, url: str) -> None:
        if args.non_fitting:
            run_non_fitting(backend, url, args.jobs, args.claimers, args.non_fitting,
                            args.poll_seconds)
        else:
            run(backend, url, args.jobs, args.claimers, args.pack)

    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            one("sqlite", f"sqlite:///{folder}/bench.db")
    if args.backend in ("postgres", "both"):
        if not have_postgres():
            print("postgres: skipped (initdb not on PATH)")
            return
        with running_postgres(max_connections="200") as postgres:
            one("postgres", postgres.url())


if __name__ == "__main__":
    main()
