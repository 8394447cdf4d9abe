"""Section d: pack scaling, by running ``bench/pack_throughput.py`` and keeping its figures.

The bench times the same k jobs (a) one after another, (b) as k processes and (c) as one pack.
The headline figures come first: (a) and (c) for every k, then (b), so a run cut short by its
time still has pack(k=8) / sequential. Recorded: samples/s per k and mode, c/a and c/b, the
peak memory per job alone and packed.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from launch.processes import REPO
from tools.gpu_check.profile import Profile
from tools.gpu_check.report import Section, log

BENCH = REPO / "bench" / "pack_throughput.py"
RESULT_NAME = "pack-throughput.json"
OUTPUT_NAME = "pack-throughput.txt"
HEADLINE_K = 8


def bench_command(profile: Profile, modes: str, json_path: Path) -> list[str]:
    return [
        sys.executable, str(BENCH),
        "--backbone", profile.bench_backbone, "--device", profile.device,
        "--dtype", profile.precision if profile.has_gpu else "fp32",
        "--batch", str(profile.bench_batch_size), "--seq-len", str(profile.bench_max_length),
        "--k", *(str(k) for k in profile.bench_ks), "--steps", str(profile.bench_steps),
        "--warmup", str(profile.bench_warmup),
        "--modes", modes, "--json", str(json_path),
    ]


def run_section(section: Section, profile: Profile, out_dir: Path, deadline: float) -> None:
    rows: dict[int, dict[str, Any]] = {}
    output = out_dir / OUTPUT_NAME
    output.write_text("")
    try:
        for modes in profile.bench_modes:
            for row in _run(section, bench_command(profile, modes, out_dir / RESULT_NAME),
                            output, deadline):
                rows.setdefault(int(row["k"]), {}).update(row)
    finally:
        if rows:
            record(section, [rows[k] for k in sorted(rows)])
            (out_dir / RESULT_NAME).write_text(json.dumps(section.tables["per k"], indent=1))


def _run(section: Section, command: list[str], output: Path,
         deadline: float) -> list[dict[str, Any]]:
    timeout = deadline - time.monotonic()
    if timeout < 10:
        raise TimeoutError(f"no time left for {' '.join(command[2:])}")
    section.row("commands", {"command": " ".join(command[2:])})
    log(f"  {' '.join(command[2:])} (timeout {timeout:.0f}s)")
    with output.open("a") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                              timeout=timeout)
    if done.returncode != 0:
        tail = output.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"the bench exited with {done.returncode}:\n" + "\n".join(tail))
    json_path = Path(command[command.index("--json") + 1])
    return list(json.loads(json_path.read_text())["rows"])


def record(section: Section, rows: list[dict[str, Any]]) -> None:
    """One row per k with c/a and c/b; the k = 8 ratio and whether memory per job falls."""
    table = []
    for row in rows:
        a, b, c = (row.get(mode) for mode in "abc")
        table.append({
            "k": row["k"], "a_sequential": a, "b_processes": b, "c_pack": c,
            "c/a": c / a if a and c else None, "c/b": c / b if b and c else None,
            "mb_per_job_alone": row.get("peak_mb_per_job_alone"),
            "mb_per_job_packed": row.get("peak_mb_per_job_packed"),
        })
    section.tables["per k"] = table
    headline = [r for r in table if r["k"] <= HEADLINE_K and r["c/a"]]
    if headline:
        best = max(headline, key=lambda r: r["k"])
        section.fact(f"pack(k={best['k']}) / sequential", round(best["c/a"], 2))
        if best["c/b"]:
            section.fact(f"pack(k={best['k']}) / k processes", round(best["c/b"], 2))
    packed = [r["mb_per_job_packed"] for r in table if r["mb_per_job_packed"]]
    if len(packed) > 1:
        section.fact("peak memory per job falls as k grows",
                     all(x >= y for x, y in itertools.pairwise(packed)))
