"""Training-step throughput of LoRA and every tensor method on the offline backbone, as ratios.

One process, interleaved rounds (each round times every method in turn) so machine noise hits all
methods alike. Each step is the runner's own (``train_step`` + ``optimizer_step``) on a batch of
the offline text task; the ratio is samples/s of the method over samples/s of LoRA. It also times
the TensLoRA+ metrics a log step adds (per-mode gradient norms + spectra) and reports them as a
fraction of the step time at the default ``log_every``.

    python bench/train_throughput.py [--rounds 3] [--steps 4] [--batch-size 16] [--max-length 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from tenslora.core.job_spec import TrainLoopSpec, TrainSpec
from tenslora.core.methods import METHODS
from tenslora.training.jobs import JobSink, optimizer_step, post_step_values, pre_step_values
from tenslora.training.loop import PackRun, prepare, train_step


def _spec(method: str, rank: int, batch_size: int, max_length: int) -> TrainSpec:
    return TrainSpec(task="rotten_tomatoes", backbone="minilm", seed=0,
                     adapter={"method": method, "ranks": rank},
                     train={"batch_size": batch_size, "max_length": max_length,
                            "max_steps": 10_000, "epochs": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per method per round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    runs = {m: prepare([_spec(m, args.rank, args.batch_size, args.max_length)], [JobSink()],
                       device) for m in METHODS}
    # Fixed-length batches (the longest examples, first in the order) so every method sees the
    # same work.
    for run in runs.values():
        job = run.jobs[0]
        job.order = np.argsort([-len(x) for x in job.train.inputs])
    step_s: dict[str, list[float]] = {m: [] for m in METHODS}
    metric_s: dict[str, list[float]] = {m: [] for m in METHODS}
    for run in runs.values():  # warm-up, and leaves non-zero cores for the spectra
        for _ in range(2):
            _step(run)
    for _ in range(args.rounds):
        for method, run in runs.items():
            began = time.perf_counter()
            for _ in range(args.steps):
                _step(run)
            step_s[method].append((time.perf_counter() - began) / args.steps)
            train_step(run, run.jobs, 0)
            began = time.perf_counter()
            pre_step_values(run.jobs[0])
            optimizer_step(run.jobs[0])
            post_step_values(run.jobs[0])
            metric_s[method].append(time.perf_counter() - began)
    log_every = TrainLoopSpec().log_every
    lora = statistics.median(step_s["lora"])
    print(f"batch {args.batch_size} x {args.max_length} tokens, rank {args.rank} (Tucker "
          f"isorank), {args.threads} threads, {args.rounds} rounds x {args.steps} steps")
    print(f"{'method':<15}{'params':>9}{'step ms':>9}{'samples/s':>11}{'vs LoRA':>9}"
          f"{'metrics ms':>12}{'% of step @log_every=' + str(log_every):>27}")
    for method, run in runs.items():
        from tenslora.adapters.model import count_adapter_parameters

        step = statistics.median(step_s[method])
        # The timed metric block includes one optimiser step; subtract the step's share of it.
        extra = max(statistics.median(metric_s[method]) - _optimizer_share(run), 0.0)
        share = extra / (log_every * step)
        print(f"{method:<15}{count_adapter_parameters(run.jobs[0].job):>9,}{step * 1e3:>9.1f}"
              f"{args.batch_size / step:>11.1f}{lora / step:>9.2f}{extra * 1e3:>12.2f}"
              f"{100 * share:>26.2f}%")


def _step(run: PackRun) -> None:
    train_step(run, run.jobs, 0)
    optimizer_step(run.jobs[0])


def _optimizer_share(run: PackRun) -> float:
    """Seconds of one bare optimiser step (AdamW + scheduler), to subtract from the metric block."""
    samples = []
    for _ in range(3):
        train_step(run, run.jobs, 0)
        began = time.perf_counter()
        optimizer_step(run.jobs[0])
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


if __name__ == "__main__":
    main()
