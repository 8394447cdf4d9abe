"""What one ``tenslora-worker`` process was asked to do: its flags as a typed, frozen object.

``worker.main`` parses the command line into it; ``worker.cluster.Cluster`` reads only it (not an
argparse namespace), so both import this module and neither imports the other.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

DEFAULT_NVML_RESERVE_MB = 512  # CUDA context and allocator slack the estimates do not count
# Jobs per pack when --pack-size is not given (docs/workers.md). On a GPU one run of a small job
# leaves most of the device idle, so a pack of 8 shares one backbone pass. On CPU the frozen
# backbone's matrix products dominate a step and a pack gains little or loses
# (bench/pack_throughput.py, docs/benchmarks.md: 0.85-1.27x against jobs one after another on
# 2 cores), so CPU slots and fake GPUs (which run on the CPU) do not pack unless asked.
DEFAULT_PACK_SIZE = {"nvml": 8, "cpu": 1, "fake": 1}


@dataclass(frozen=True)
class WorkerSettings:
    """One field per flag of ``tenslora-worker`` (named as the flag, dashes as underscores)."""

    api: str = ""  # empty until given: ``worker.main.check_args`` refuses to start without it
    token: str = ""
    name: str = "worker"
    gpus: str | None = None
    fake_gpus: str | None = None
    cpu_slots: int = 0
    ray_address: str | None = None
    max_jobs_per_gpu: int = 8
    pack_size: int | None = None
    reserve_mb: int | None = None
    poll_interval: float = 2.0
    drain_timeout: float = 60.0
    spool_dir: str | None = None
    stats_file: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> WorkerSettings:
        """The settings of parsed flags (the parser's destinations are these field names)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**values, "api": values["api"] or "", "token": values["token"] or ""})

    def reserve_for(self, probe_kind: str) -> int:
        """MiB per device never offered to jobs: the flag, else a real GPU's slack, else 0."""
        if self.reserve_mb is not None:
            return self.reserve_mb
        return DEFAULT_NVML_RESERVE_MB if probe_kind == "nvml" else 0

    def pack_size_for(self, probe_kind: str) -> int:
        """Most jobs in one pack on a device of ``probe_kind``: the flag, else the default."""
        if self.pack_size is not None:
            return self.pack_size
        # "none" (no GPU actor at all, CPU slots only) packs as CPU slots do.
        return DEFAULT_PACK_SIZE.get(probe_kind.split(":")[0], DEFAULT_PACK_SIZE["cpu"])

    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else default_data_dir() / "worker-spool"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("tenslora"))
