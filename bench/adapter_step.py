"""Training-step time of every TensLoRA method against PEFT LoRA and the frozen backbone.

One process, interleaved runs: each round times a few forward+backward+AdamW steps of every
variant in a shuffled order, and the table reports medians, as ratios to PEFT LoRA (r=4 on
query/key/value) and to the frozen backbone (no adapter, only the classifier head trains, so there
is something to step). The backbone is a random-init BERT of MiniLM's size (hidden 384, 6 layers,
12 heads), batch 8 x 64 tokens, 2 threads.

    python bench/adapter_step.py [--rounds 12] [--steps 2] [--rank 4]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tenslora import AdapterConfig, apply_adapter, count_adapter_parameters
from tenslora.methods import TENSOR_METHODS

BATCH, TOKENS = 8, 64
PEFT, FROZEN = "PEFT LoRA", "frozen backbone"


def backbone() -> transformers.BertForSequenceClassification:
    config = transformers.BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config).train()


def peft_lora(model: torch.nn.Module, rank: int) -> torch.nn.Module:
    import peft

    config = peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=["query", "key", "value"])
    return peft.get_peft_model(model, config)


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("classifier"))
    return model


def make_step(model: torch.nn.Module) -> Callable[[], None]:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30000, (BATCH, TOKENS), generator=generator)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (BATCH,), generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()

    return step


def variants(rank: int) -> dict[str, tuple[torch.nn.Module, int]]:
    torch.manual_seed(0)
    base = backbone()
    models: dict[str, torch.nn.Module] = {
        FROZEN: frozen(copy.deepcopy(base)),
        PEFT: peft_lora(copy.deepcopy(base), rank),
    }
    configs = [AdapterConfig("lora", ranks=rank)] + [
        AdapterConfig(m, factorization=f, ranks=rank)
        for m in TENSOR_METHODS
        for f in ("tucker", "cp")
    ]
    for config in configs:
        name = "lora" if config.method == "lora" else f"{config.method} {config.factorization}"
        models[name] = apply_adapter(copy.deepcopy(base), config)
    counts = {
        name: (
            count_adapter_parameters(m)
            if hasattr(m, "tenslora_adapter")
            else sum(p.numel() for n, p in m.named_parameters() if p.requires_grad)
        )
        for name, m in models.items()
    }
    return {name: (m, counts[name]) for name, m in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = variants(args.rank)
    steps = {name: make_step(m) for name, (m, _) in models.items()}
    for step in steps.values():  # warm-up: allocator, AdamW state, first-call overheads
        step()
        step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for _ in range(args.rounds):
        random.shuffle(order)
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                steps[name]()
            wall[name].append((time.perf_counter() - start) / args.steps)
            cpu[name].append((time.process_time() - start_cpu) / args.steps)
    report(models, wall, cpu, args)


def report(models, wall, cpu, args) -> None:
    """Medians as a markdown table; CPU time is printed too because it is less sensitive to
    other processes sharing the cores than wall time is."""
    w = {name: statistics.median(t) for name, t in wall.items()}
    c = {name: statistics.median(t) for name, t in cpu.items()}
    print(
        f"rank {args.rank}, batch {BATCH} x {TOKENS}, {args.threads} threads, "
        f"{args.rounds} rounds x {args.steps} steps, torch {torch.__version__}"
    )
    print(
        "| variant | adapter params | wall ms | / PEFT LoRA | / frozen "
        "| CPU ms | CPU / PEFT LoRA | CPU / frozen |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in wall:
        print(
            f"| {name} | {models[name][1]:,} | {1000 * w[name]:.1f} "
            f"| {w[name] / w[PEFT]:.3f} | {w[name] / w[FROZEN]:.3f} "
            f"| {1000 * c[name]:.1f} | {c[name] / c[PEFT]:.3f} | {c[name] / c[FROZEN]:.3f} |"
        )
    ours = [name for name in wall if name not in (PEFT, FROZEN)]
    print(
        f"worst ratio to PEFT LoRA: wall {max(w[n] / w[PEFT] for n in ours):.3f}, "
        f"CPU {max(c[n] / c[PEFT] for n in ours):.3f}"
    )


if __name__ == "__main__":
    main()
