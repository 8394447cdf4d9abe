"""What the check runs where: the GPU profile (the real check) and the CPU profile (its rehearsal).

The CPU profile runs every section's plumbing in minutes on a small machine: few tiny steps, the
worker on a declared fake GPU, and the NVML-only parts recorded as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str  # "gpu" | "cpu"
    device: str  # where section a trains: "cuda" | "cpu"
    # Section a: every method x factorization (``methods``: a few only, None: all of them).
    methods: tuple[tuple[str, str], ...] | None
    steps: int
    batch_size: int
    max_length: int
    precision: str
    # Section c: the worker's device flags and the sweep's size.
    worker_device_flags: tuple[str, ...]
    pack_size: int
    sweep_steps: int
    sweep_seeds: int
    sweep_configs: tuple[int, int]  # train configs of the first and of the second pack key
    synthetic_jobs: int
    synthetic_memory_mb: int  # big enough that only some synthetic jobs fit at once
    # Section d: the pack throughput bench.
    bench_ks: tuple[int, ...]
    bench_backbone: str
    bench_batch_size: int
    bench_max_length: int
    bench_steps: int
    bench_warmup: int
    bench_modes: tuple[str, ...]  # one bench run per entry, in this order

    @property
    def checks_loss(self) -> bool:
        """Only the GPU profile trains long enough for its loss to have to fall."""
        return self.has_gpu

    @property
    def has_gpu(self) -> bool:
        return self.device == "cuda"


GPU = Profile(
    name="gpu", device="cuda", methods=None, steps=30, batch_size=32, max_length=128,
    precision="bf16",
    worker_device_flags=("--gpus", "0"), pack_size=4, sweep_steps=60, sweep_seeds=2,
    sweep_configs=(6, 2), synthetic_jobs=3,
    synthetic_memory_mb=60_000,
    bench_ks=(1, 2, 4, 8, 16), bench_backbone="roberta-base-random", bench_batch_size=32,
    bench_max_length=128, bench_steps=10,
    bench_warmup=2, bench_modes=("ac", "b"),
)

CPU = Profile(
    name="cpu", device="cpu",
    methods=(("lora", "tucker"), ("att_qkv_depth", "cp")),
    steps=3, batch_size=4, max_length=16, precision="bf16",
    worker_device_flags=("--fake-gpus", "1x16000"), pack_size=4, sweep_steps=3, sweep_seeds=1,
    sweep_configs=(3, 1), synthetic_jobs=2,
    synthetic_memory_mb=9_000,
    bench_ks=(1, 2), bench_backbone="minilm", bench_batch_size=4, bench_max_length=16,
    bench_steps=1, bench_warmup=1, bench_modes=("ac",),
)

PROFILES = {p.name: p for p in (GPU, CPU)}
