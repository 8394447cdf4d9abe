"""Section d: pack scaling, by running ``bench/pack_throughput.py`` and keeping its figures.

The bench times the same k jobs (a) one after another, (b) as k processes and (c) as one pack,
for each k; this section records samples/s per k and mode, the ratio pack(k=8) / sequential and
the peak memory per job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu_check.profile import Profile
from bench.gpu_check.report import Section, Skipped, log

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "pack_throughput.py"
RESULT_NAME = "pack-throughput.json"
OUTPUT_NAME = "pack-throughput.txt"


def bench_command(profile: Profile, json_path: Path) -> list[str]:
    return [
        sys.executable, str(BENCH),
        "--backbone", profile.bench_backbone, "--device", profile.device,
        "--precision", profile.precision, "--batch-size", str(profile.bench_batch_size),
        "--max-length", str(profile.bench_max_length),
        "--k", ",".join(str(k) for k in profile.bench_ks),
        "--steps", str(profile.bench_steps), "--json", str(json_path),
    ]


def run_section(section: Section, profile: Profile, out_dir: Path, deadline: float) -> None:
    if not BENCH.exists():
        # TODO(packs): bench/pack_throughput.py lands with the packs work; until then: missing.
        raise Skipped("bench missing: bench/pack_throughput.py is not in this checkout")
    json_path = out_dir / RESULT_NAME
    command = bench_command(profile, json_path)
    section.fact("command", " ".join(command[1:]))
    timeout = max(10.0, deadline - time.monotonic())
    log(f"  {' '.join(command[1:])} (timeout {timeout:.0f}s)")
    with (out_dir / OUTPUT_NAME).open("w") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO,
                              timeout=timeout)
    if done.returncode != 0:
        tail = (out_dir / OUTPUT_NAME).read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"the bench exited with {done.returncode}:\n" + "\n".join(tail))
    record(section, json.loads(json_path.read_text()))


def record(section: Section, figures: dict[str, Any]) -> None:
    """Copies the bench's figures into the section: one row per k, the k = 8 ratio."""
    for name, value in figures.items():
        if name != "rows":
            section.fact(name, value)
    for row in figures.get("rows", []):
        section.row("per k", row)
