"""Queue throughput: N concurrent HTTP claimers (claim + complete) against the real server.

Starts `tenslora serve` on a fresh SQLite file and on a fresh Postgres (initdb + pg_ctl, when the
binaries are on PATH), queues --jobs synthetic jobs, and lets --claimers threads drain the queue.
Prints jobs/s and claim latency percentiles, and the ratio to the goal (300 jobs/s, max claim 1 s).
With --pack K the claimers take packs of up to K train jobs of one pack key
(POST /api/v1/jobs/claim-pack; goal 1,000 jobs/s on SQLite with 8 claimers), and each run also
drains a second queue claiming only (no completes) to show what the claim alone costs.

    python bench/queue_throughput.py --jobs 3000 --claimers 8
    python bench/queue_throughput.py --jobs 3000 --claimers 8 --pack 8 --backend sqlite
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOAL_JOBS_PER_S = 300.0
GOAL_PACKED_JOBS_PER_S = 1000.0
# Train jobs share a pack key when only the seed differs (see tenslora/packing.py).
PACKABLE_JOB = {
    "kind": "train", "task": "synthetic_text", "backbone": "minilm",
    "train": {"max_steps": 1, "batch_size": 4, "max_length": 16},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@contextmanager
def postgres_url() -> Iterator[str]:
    data, sockets = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    data.chmod(0o700)
    port = free_port()
    subprocess.run(
        as_postgres("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
    subprocess.run(
        as_postgres(
            "pg_ctl", "-D", str(data), "-l", str(sockets / "pg.log"), "-o", options, "-w", "start"
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            as_postgres("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"), capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)


@contextmanager
def server(database_url: str) -> Iterator[tuple[str, dict[str, str], int]]:
    from scheduler.db import Database
    from scheduler.migrate import upgrade
    from scheduler.tokens import create_token

    upgrade(database_url)
    database = Database(database_url)
    with database.session() as session:
        tokens = {role: create_token(session, role, "bench") for role in ("submitter", "worker")}
    database.dispose()
    port = free_port()
    env = {**os.environ, "TENSLORA_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield url, tokens, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


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


def run(backend: str, database_url: str, jobs: int, claimers: int, pack: int = 1) -> None:
    goal = GOAL_PACKED_JOBS_PER_S if pack > 1 else GOAL_JOBS_PER_S
    with server(database_url) as (url, tokens, pid):
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
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            run("sqlite", f"sqlite:///{folder}/bench.db", args.jobs, args.claimers, args.pack)
    if args.backend in ("postgres", "both"):
        if shutil.which("initdb") is None:
            print("postgres: skipped (initdb not on PATH)")
            return
        with postgres_url() as url:
            run("postgres", url, args.jobs, args.claimers, args.pack)


if __name__ == "__main__":
    main()
