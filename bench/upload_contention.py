"""Claim and heartbeat latency while workers upload large adapters (issue 20, finding 7).

One server on SQLite or Postgres (loopback only). Phase 1, idle: a prober process claims a job
and heartbeats a lease in a loop. Phase 2, the same while ``--uploaders`` processes each upload
``--rounds`` adapter zips of ``--mib`` MiB to their own running train job (a re-upload by the
lease holder replaces the last). Prints p50/p99 of each phase. Bounded: every loop stops at a
count and at ``--deadline`` seconds.

    PYTHONPATH=. .venv/bin/python bench/upload_contention.py --backend both
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

from launch.postgres import running_postgres
from launch.server import mint_tokens, sqlite_url, start_server
from tools.adapter_uploads import adapter_zip_of

TRAIN = {"kind": "train", "task": "rotten_tomatoes", "backbone": "minilm"}
SYNTHETIC = {"kind": "synthetic", "duration_s": 0, "memory_mb": 100}


def _upload(url: str, token: str, job_id: int, lease_id: str, mib: int, rounds: int,
            deadline: float) -> list[float]:
    body = adapter_zip_of(mib * 2**20)
    took = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=120) as client:
        for _ in range(rounds):
            if time.time() > deadline:
                break
            started = time.monotonic()
            answer = client.put(f"/api/v1/jobs/{job_id}/adapter", params={"lease_id": lease_id},
                                content=body)
            answer.raise_for_status()
            took.append(time.monotonic() - started)
    return took


def _probe(client: httpx.Client, lease: dict, stop: threading.Event, limit: int,
           claims: list[float], beats: list[float]) -> None:
    for _ in range(limit):
        if stop.is_set():
            return
        started = time.monotonic()
        client.post("/api/v1/jobs/claim", json={"worker_id": "prober", "free_memory_mb": 10**6}
                    ).raise_for_status()
        claims.append(time.monotonic() - started)
        started = time.monotonic()
        client.post(f"/api/v1/jobs/{lease['job']['id']}/heartbeat",
                    json={"lease_id": lease["lease_id"]}).raise_for_status()
        beats.append(time.monotonic() - started)
        time.sleep(0.02)


def _summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{name}: n={len(values)} p50 {statistics.median(values) * 1000:.1f} ms "
            f"p99 {p99 * 1000:.1f} ms max {ordered[-1] * 1000:.0f} ms")


def run(url: str, folder: Path, args: argparse.Namespace) -> None:
    tokens = mint_tokens(url, ("worker", "submitter"))
    env = {"TENSLORA_MAX_ADAPTER_MB": str(args.mib + 4), "TENSLORA_LEASE_SECONDS": "600",
           "TENSLORA_ARTIFACTS_DIR": str(folder / "artifacts")}
    server = start_server(url, folder / "server.log", env=env)
    try:
        auth = {"Authorization": f"Bearer {tokens['submitter']}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            client.post("/api/v1/sweeps", json={"name": "train", "base": TRAIN, "priority": 9,
                                                "grid": {"seed": list(range(args.uploaders + 1))}}
                        ).raise_for_status()
            client.post("/api/v1/sweeps", json={"name": "fill", "base": SYNTHETIC,
                                                "grid": {"seed": list(range(args.jobs))}}
                        ).raise_for_status()
        worker = {"Authorization": f"Bearer {tokens['worker']}"}
        with httpx.Client(base_url=server.url, headers=worker, timeout=60) as client:
            leases = [client.post("/api/v1/jobs/claim",
                                  json={"worker_id": f"w{i}", "free_memory_mb": 10**6}).json()
                      for i in range(args.uploaders + 1)]
            assert all(lease["job"]["kind"] == "train" for lease in leases), leases
            for phase, uploaders in (("idle", 0), ("uploading", args.uploaders)):
                claims: list[float] = []
                beats: list[float] = []
                stop = threading.Event()
                prober = threading.Thread(target=_probe, args=(client, leases[-1], stop,
                                                               args.jobs // 2, claims, beats))
                deadline = time.time() + args.deadline
                started = time.monotonic()
                prober.start()
                if uploaders:
                    with ProcessPoolExecutor(uploaders) as pool:
                        futures = [pool.submit(_upload, server.url, tokens["worker"],
                                               lease["job"]["id"], lease["lease_id"], args.mib,
                                               args.rounds, deadline) for lease in leases[:-1]]
                        uploads = [t for f in futures for t in f.result()]
                else:
                    time.sleep(min(5.0, args.deadline))
                stop.set()
                prober.join(60)
                print(f"  {phase} ({time.monotonic() - started:.1f} s)")
                print("    " + _summary("claim", claims))
                print("    " + _summary("heartbeat", beats))
                if uploaders:
                    print("    " + _summary(f"upload of {args.mib} MiB", uploads))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--mib", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="uploads per uploader")
    parser.add_argument("--jobs", type=int, default=4000, help="synthetic jobs to claim")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per phase")
    args = parser.parse_args()
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        print(f"{backend}: {args.uploaders} uploaders x {args.rounds} x {args.mib} MiB")
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary)
            if backend == "sqlite":
                run(sqlite_url(folder), folder, args)
            else:
                with running_postgres() as postgres:
                    run(postgres.fresh_database(), folder, args)


if __name__ == "__main__":
    main()
