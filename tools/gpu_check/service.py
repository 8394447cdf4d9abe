"""Sections c and e: a real ``tenslora serve`` (SQLite) and ``tenslora-worker`` run a mixed sweep.

Section c starts both through ``cli.local_cluster.LocalCluster`` (what ``tenslora demo`` uses),
submits train jobs of two pack keys (several methods and factorizations) and synthetic jobs too
big to run all at once, and records the jobs, the packs the API reports (``pack_id``), how many
ran at once, the free memory the worker offered over time and the wall time. Section e compares
each job's memory estimate with the peak its run observed.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cli.local_cluster import LocalCluster
from protocol.client import ApiClient
from protocol.vocabulary import TERMINAL, JobStatus, Role
from tools.gpu_check.profile import Profile
from tools.gpu_check.report import Section, Skipped, log

# Methods and factorizations of the packed train jobs: LoRA and three constructions, both kinds.
PACK_MIX = (("lora", "tucker"), ("qkv", "tucker"), ("qkv", "cp"), ("depth", "cp"),
            ("att_qkv_depth", "tucker"), ("att_qkv_depth", "cp"))
SECOND_KEY_MIX = (("att", "tucker"), ("qkv_depth", "cp"))
LOG_TAIL_BYTES = 200_000


def train_sweep(profile: Profile) -> dict[str, Any]:
    steps = profile.sweep_steps
    second_key = {"train": {"batch_size": max(1, profile.batch_size // 2)}}
    return {
        "name": "gpu-check-train",
        "base": {
            "kind": "train", "task": "synthetic_text", "backbone": "minilm",
            "adapter": {"ranks": 4}, "optim": {"lr": 5.0e-3},
            "train": {"max_steps": steps, "batch_size": profile.batch_size,
                      "max_length": profile.max_length, "precision": profile.precision,
                      "log_every": max(1, steps // 4), "eval_every": steps,
                      "max_eval_samples": 8 * profile.batch_size},
        },
        "configs": [{"adapter": {"method": m, "factorization": f}}
                    for m, f in PACK_MIX[: profile.sweep_configs[0]]]
        + [{"adapter": {"method": m, "factorization": f}, **second_key}
           for m, f in SECOND_KEY_MIX[: profile.sweep_configs[1]]],
        "grid": {"seed": list(range(profile.sweep_seeds))},
    }


def synthetic_sweep(profile: Profile) -> dict[str, Any]:
    """Jobs that hold memory on paper: only some fit the device at once."""
    return {
        "name": "gpu-check-synthetic",
        "base": {"kind": "synthetic", "duration_s": 3.0,
                 "memory_mb": profile.synthetic_memory_mb, "outcome": {"accuracy": 1.0}},
        "grid": {"seed": list(range(profile.synthetic_jobs))},
    }


def run_sweep(section: Section, profile: Profile, out_dir: Path, deadline: float,
              state: dict[str, Any]) -> None:
    flags = [*profile.worker_device_flags, "--poll-interval", "0.5",
             "--pack-size", str(profile.pack_size)]
    section.fact("worker_flags", " ".join(flags))
    section.fact("pack_size", profile.pack_size)
    data_dir = Path(tempfile.mkdtemp(prefix="gpu-check-service-"))
    cluster = LocalCluster(data_dir, 0, flags)
    try:
        cluster.start()
        began = time.monotonic()
        sweep_ids = [cluster.submit(train_sweep(profile)), cluster.submit(synthetic_sweep(profile))]
        samples = _follow(cluster, sweep_ids, deadline)
        wall_s = time.monotonic() - began
        jobs = [job for sweep_id in sweep_ids for job in cluster.jobs(sweep_id)]
    finally:
        cluster.stop()
        _keep_logs(data_dir, out_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    state["jobs"] = jobs
    _record(section, jobs, samples, wall_s)


def _follow(cluster: LocalCluster, sweep_ids: list[int], deadline: float) -> list[dict[str, Any]]:
    """Polls until every job ended; samples the worker's last offered free memory each second."""
    samples: list[dict[str, Any]] = []
    began = time.monotonic()
    with ApiClient(cluster.url, cluster.tokens[Role.admin], timeout_s=30) as api:
        while True:
            cluster.check_alive()
            counts: Counter[str] = Counter()
            for sweep_id in sweep_ids:
                counts.update(api.get_sweep(sweep_id).counts)
            samples.append({
                "t_s": round(time.monotonic() - began, 1),
                "running": counts.get(JobStatus.running, 0),
                "ended": sum(counts.get(s, 0) for s in TERMINAL),
                "offered_free_mb": [w.free_memory_mb for w in api.workers().items],
            })
            if samples[-1]["running"] == 0 and counts.get(JobStatus.queued, 0) == 0 and counts:
                return samples
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sweep had not finished by its deadline: {dict(counts)}")
            if len(samples) % 10 == 0:
                log(f"  sweep: {dict(counts)}")
            time.sleep(1.0)


def _record(section: Section, jobs: list[dict[str, Any]], samples: list[dict[str, Any]],
            wall_s: float) -> None:
    statuses = Counter(job["status"] for job in jobs)
    packs = Counter(job.get("pack_id") for job in jobs if job.get("pack_id"))
    section.fact("jobs", len(jobs))
    section.fact("statuses", dict(statuses))
    section.fact("wall_s", round(wall_s, 1))
    section.fact("packs", len(packs))
    section.fact("pack_sizes", sorted(packs.values(), reverse=True))
    section.fact("most_jobs_running_at_once", max((s["running"] for s in samples), default=0))
    offered = [mb for s in samples for mb in s["offered_free_mb"] if mb is not None]
    if offered:
        section.fact("offered_free_mb_min_max", [min(offered), max(offered)])
    for job in jobs:
        section.row("jobs", _job_row(job))
    for sample in samples[:: max(1, len(samples) // 20)]:
        section.row("samples", sample)
    failed = [job for job in jobs if job["status"] != JobStatus.succeeded]
    if failed:
        first = failed[0]
        raise AssertionError(f"{len(failed)} of {len(jobs)} jobs did not succeed; job "
                             f"{first['id']}: {first['status']} {first.get('error') or ''}"[:2000])


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    config, result = job["config"], job.get("result") or {}
    return {
        "id": job["id"], "kind": job["kind"], "adapter": _adapter(job),
        "batch": (config.get("train") or {}).get("batch_size"),
        "status": job["status"], "pack_id": job.get("pack_id"), "device": job.get("device"),
        "estimate_mb": job.get("memory_estimate_mb"), "peak_mb": result.get("peak_memory_mb"),
        "wall_s": result.get("wall_s"), "accuracy": result.get("accuracy"),
    }


def _keep_logs(data_dir: Path, out_dir: Path) -> None:
    """The tails of the server's and the worker's logs, in one file (the device returns few)."""
    parts = []
    for name in ("server.log", "worker.log"):
        path = data_dir / name
        if path.exists():
            data = path.read_bytes()[-LOG_TAIL_BYTES:]
            parts.append(f"===== {name} (last {len(data)} bytes)\n{data.decode(errors='replace')}")
    (out_dir / "service-logs.txt").write_text("\n".join(parts))


def compare_estimates(section: Section, state: dict[str, Any]) -> None:
    """Section e: memory estimates (the API's) against observed peaks (the results').

    A job that ran alone: its ``memory_estimate_mb`` against its ``peak_memory_mb``. A pack (its
    jobs all report the pack process's peak): the pack's peak against the scheduler's formula for
    a pack (backbone once + a share per job) and against the sum of its jobs' estimates.
    """
    jobs = state.get("jobs")
    if not jobs:
        raise Skipped("no jobs: section c did not finish a sweep")
    ratios = []
    packs: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        peak, estimate = _peak(job), job.get("memory_estimate_mb")
        if peak is None or not estimate:
            continue
        if job.get("pack_id"):
            packs.setdefault(job["pack_id"], []).append(job)
            continue
        ratios.append(peak / estimate)
        section.row("jobs alone", {
            "id": job["id"], "kind": job["kind"], "adapter": _adapter(job),
            "estimate_mb": estimate, "peak_mb": round(peak, 1),
            "peak/estimate": round(peak / estimate, 3), "under-estimated": peak > estimate,
        })
    for pack_id, members in packs.items():
        peak = max(p for p in map(_peak, members) if p is not None)
        formula = _formula_pack_mb(members)
        ratios.append(peak / formula)
        section.row("packs", {
            "pack_id": pack_id, "jobs": len(members), "peak_mb": round(peak, 1),
            "formula_pack_mb": formula, "peak/formula": round(peak / formula, 3),
            "sum_of_job_estimates_mb": sum(j["memory_estimate_mb"] for j in members),
            "under-estimated": peak > formula,
        })
    if not ratios:
        raise Skipped("no job reported a peak_memory_mb")
    section.fact("compared (jobs alone + packs)", len(ratios))
    section.fact("under_estimated", sum(r > 1 for r in ratios))
    section.fact("peak/estimate min, median, max",
                 [round(min(ratios), 3), round(statistics.median(ratios), 3),
                  round(max(ratios), 3)])


def _peak(job: dict[str, Any]) -> float | None:
    peak = (job.get("result") or {}).get("peak_memory_mb")
    return float(peak) if isinstance(peak, int | float) else None


def _adapter(job: dict[str, Any]) -> str:
    adapter = job["config"].get("adapter") or {}
    return f"{adapter.get('method')}/{adapter.get('factorization')}" if adapter else ""


def _formula_pack_mb(members: list[dict[str, Any]]) -> int:
    """Backbone once plus each job's share, by the scheduler's own formula (nothing learned)."""
    from scheduler.memory import pack_memory_mb
    from tenslora.core.job_spec import TrainSpec

    spec = TrainSpec.model_validate(members[0]["config"])
    base, share = pack_memory_mb(spec, {})
    return base + share * len(members)
