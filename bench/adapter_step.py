"""Training-step time of every TensLoRA method against PEFT LoRA and the frozen backbone.

One process, interleaved runs: each round times forward+backward+AdamW steps of every variant
paired with PEFT LoRA (r=4 on query/key/value), in a shuffled order, and the table reports the
median ratio, to PEFT LoRA and to the frozen backbone (no adapter, only the classifier head
trains, so there is something to step). The backbone is a random-init BERT of MiniLM's size
(hidden 384, 6 layers, 12 heads), batch 8 x 64 tokens, 2 threads.

    python bench/adapter_step.py [--rounds 8] [--rank 4]
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
from tenslora.core.methods import TENSOR_METHODS

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
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = variants(args.rank)
    steps = {name: make_step(m) for name, (m, _) in models.items()}
    for step in steps.values():  # warm-up: allocator, AdamW state, first-call overheads
        step()
        step()
    ratios, wall, fastest = measure(steps, args.rounds)
    report(models, ratios, wall, fastest, args)


def _timed(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(
    steps: dict[str, Callable[[], None]], rounds: int, per_run: int = 1
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    """Each round pairs every variant with PEFT LoRA in an A-B-B-A pattern (variants in a
    shuffled order), so load from other processes on the shared cores hits both sides of a
    ratio alike. Returns per-round ratios to PEFT LoRA, every wall time measured, and each
    variant's fastest step over the fastest of the PEFT LoRA steps it was paired with."""
    ratios: dict[str, list[float]] = {name: [] for name in steps if name != PEFT}
    wall: dict[str, list[float]] = {name: [] for name in steps}
    # PEFT LoRA's own times per partner: the fastest of as many samples as the partner has.
    partner: dict[str, list[float]] = {name: [] for name in ratios}
    order = list(ratios)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            a1 = _timed(steps[PEFT], per_run)
            b1 = _timed(steps[name], per_run)
            b2 = _timed(steps[name], per_run)
            a2 = _timed(steps[PEFT], per_run)
            ratios[name].append((b1 + b2) / (a1 + a2))
            wall[name] += [b1, b2]
            wall[PEFT] += [a1, a2]
            partner[name] += [a1, a2]
    fastest = {name: min(wall[name]) / min(partner[name]) for name in ratios}
    return ratios, wall, fastest


def report(models, ratios, wall, fastest_to_peft, args) -> None:
    """Medians of the paired ratios, and ratios of the fastest steps (noise on shared cores
    only ever adds time, so the minimum is the other robust estimate of a step's own cost)."""
    median = {name: statistics.median(r) for name, r in ratios.items()}
    fastest_to_peft = {PEFT: 1.0, **fastest_to_peft}
    print(
        f"rank {args.rank}, batch {BATCH} x {TOKENS}, {args.threads} threads, "
        f"{args.rounds} rounds of A-B-B-A pairs with PEFT LoRA, torch {torch.__version__}"
    )
    print(
        "| variant | adapter params | median step ms | / PEFT LoRA (paired median) "
        "| / frozen (paired median) | / PEFT LoRA (fastest) | / frozen (fastest) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in wall:
        to_peft = 1.0 if name == PEFT else median[name]
        print(
            f"| {name} | {models[name][1]:,} | {1000 * statistics.median(wall[name]):.1f} "
            f"| {to_peft:.3f} | {to_peft / median[FROZEN]:.3f} "
            f"| {fastest_to_peft[name]:.3f} "
            f"| {fastest_to_peft[name] / fastest_to_peft[FROZEN]:.3f} |"
        )
    ours = [name for name in wall if name not in (PEFT, FROZEN)]
    print(
        f"worst ratio to PEFT LoRA: paired median {max(median[n] for n in ours):.3f}, "
        f"fastest {max(fastest_to_peft[n] for n in ours):.3f}"
    )


if __name__ == "__main__":
    main()
