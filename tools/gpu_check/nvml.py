"""Section b: the worker's own probe (``NvmlProbe``) sees the GPU, and sees memory a job holds.

A child process allocates ``HOLD_MB`` with torch and waits; the probe reads the free memory
before, while and after it holds it. The drop must be at least the held memory (the child's CUDA
context adds a few hundred MiB more).
"""

from __future__ import annotations

import select
import subprocess
import sys
import time

from tools.gpu_check.profile import Profile
from tools.gpu_check.report import Section, Skipped

HOLD_MB = 4096
_HOLDER = f"""
import sys, torch
held = torch.ones({HOLD_MB} * 2**20, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("holding", flush=True)
sys.stdin.read()
"""


def run_section(section: Section, profile: Profile) -> None:
    if not profile.has_gpu:
        raise Skipped("no GPU: NVML has no driver to ask on this machine")
    from worker.probe import NvmlProbe

    probe = NvmlProbe()
    devices = probe.devices()
    section.fact("devices", [f"{d.name} {d.total_memory_mb} MiB" for d in devices])
    before = probe.free_memory_mb(0)
    child = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        ready, _, _ = select.select([child.stdout], [], [], 120)
        if not ready or child.stdout.readline().strip() != "holding":
            raise RuntimeError("the child did not report holding its memory within 120 s")
        time.sleep(0.5)
        during = probe.free_memory_mb(0)
        child.stdin.close()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    time.sleep(1.0)  # the driver frees the context's memory shortly after the process ends
    after = probe.free_memory_mb(0)
    section.fact("free_mb_before", before)
    section.fact("free_mb_while_holding", during)
    section.fact("free_mb_after", after)
    section.fact("held_mb", HOLD_MB)
    section.fact("drop_mb", before - during)
    section.fact("recovered_mb", after - during)
    if before - during < HOLD_MB:
        raise AssertionError(f"NVML free memory fell by {before - during} MiB while a process "
                             f"held {HOLD_MB} MiB")
