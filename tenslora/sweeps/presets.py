"""Sweep presets: the paper's ablations as sweep documents. Torch-free.

A preset returns a plain dict in the schema of ``POST /api/v1/sweeps``:
``{name, base, configs, grid, priority?}``; every job is one entry of ``configs`` deep-merged onto
``base``, times the cartesian product of ``grid`` (here: the seeds). Every entry carries a ``tag``
so results group into the paper's rows, and Table 2's entries their ``regime``
(``tenslora.core.regimes.REGIMES``), which the dashboard's sections read.

- ``paper-table2``: Table 2. LoRA at rank r, then the 7 constructions under isorank and under
  isoparameters (ranks from :mod:`tenslora.core.regimes`), then the related methods that Table 1
  places in the framework. FacT (QKV_Depth, Tucker) at FacT-TK's own rank 32 on every mode
  (clamped to the mode's size; at the LoRA budget it would coincide with the QKV_Depth
  isoparameters row). The others at the LoRA row's parameter budget: LoTR (Q and V only, Tucker-2:
  as one QKV_Depth tensor and as separate Depth tensors), LoRTA (Att_QKV_Depth, CP, with the
  output projection) and CaRA (Att_QKV_Depth, CP; CaRA also merges the QKV and Layers modes, which
  the framework keeps apart, hence the paper's asterisk).
- ``core-lr``: TensLoRA+ core learning-rate multipliers 1, 4, 8, 16 on one Tucker adapter.
- ``allocate``: TensLoRA+ heterogeneous ranks. For every Tucker adapter of a finished sweep, the
  ranks ``tenslora.core.allocation.allocate_ranks`` suggests from the spectra its runs streamed,
  at the adapter's own parameter count (the same budget).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.allocation import GROW_ENTROPY, SHRINK_TOP1, allocate_ranks
from tenslora.core.catalog import get_backbone, get_task
from tenslora.core.methods import TENSOR_METHODS
from tenslora.core.metric_contract import SPECTRUM_PREFIXES, allocator_input
from tenslora.core.regimes import (
    ISOPARAMETERS,
    ISORANK,
    LORA_REGIME,
    RELATED,
    isoparameters,
    isorank,
    predict_parameters,
)
from tenslora.sweeps.documents import deep_merge, set_path

PRESETS: tuple[str, ...] = ("paper-table2", "core-lr", "allocate")
CORE_LR_MULTIPLIERS: tuple[float, ...] = (1.0, 4.0, 8.0, 16.0)
FACT_RANK = 32

# The paper's optimisation (section 4.2 and its training scripts): AdamW with default betas,
# linear warmup then cosine annealing from the peak to the floor, 10 epochs.
PAPER_OPTIM: dict[str, Any] = {"lr": 5.0e-4, "min_lr": 0.0, "warmup_ratio": 0.1,
                               "weight_decay": 0.0}
PAPER_TRAIN: dict[str, Any] = {"epochs": 10, "batch_size": 64, "max_length": 128}

DEFAULT_BACKBONE = {"text": "roberta-base", "image": "vit-base-in21k"}


def default_backbone(task: str) -> str:
    """The paper's backbone for the task's modality: RoBERTa-base for text, ViT for images."""
    return DEFAULT_BACKBONE[get_task(task).modality]


def adapter_parameters(adapter: Mapping[str, Any], backbone: str) -> int:
    """Trainable adapter parameters of a spec's ``adapter`` section on ``backbone``."""
    info = get_backbone(backbone)
    config = AdapterConfig.from_dict(adapter)
    return predict_parameters(config, info.d_model, info.n_layers, info.n_heads)


def closest_to_budget(
    make: Callable[[int], dict[str, Any]], budget: int, backbone: str, max_rank: int = 1024
) -> dict[str, Any]:
    """The adapter ``make(r)`` whose parameter count is closest to ``budget`` (ties: smaller r).

    ``make`` must give more parameters for larger ``r``; the search stops once it passes the
    budget.
    """
    best = make(1)
    best_gap = abs(adapter_parameters(best, backbone) - budget)
    for r in range(2, max_rank + 1):
        candidate = make(r)
        params = adapter_parameters(candidate, backbone)
        if abs(params - budget) < best_gap:
            best, best_gap = candidate, abs(params - budget)
        if params > budget:
            break
    return best


def _base(task: str, backbone: str) -> dict[str, Any]:
    return {
        "kind": "train",
        "task": task,
        "backbone": backbone,
        "optim": dict(PAPER_OPTIM),
        "train": dict(PAPER_TRAIN),
    }


def _entry(tag: str, regime: str, **adapter: Any) -> dict[str, Any]:
    return {"tag": tag, "regime": regime, "adapter": adapter}


def _table2_configs(backbone: str, lora_rank: int) -> list[dict[str, Any]]:
    """LoRA, then every construction under isorank, then under isoparameters (Tucker)."""
    info = get_backbone(backbone)
    configs = [_entry("lora", LORA_REGIME, method="lora", ranks=lora_rank)]
    for name in TENSOR_METHODS:
        configs.append(
            _entry(f"{name}-isorank", ISORANK, method=name, ranks=list(isorank(name, lora_rank)))
        )
    for name in TENSOR_METHODS:
        ranks = isoparameters(name, lora_rank, info.d_model, info.n_layers, info.n_heads)
        configs.append(_entry(f"{name}-isoparams", ISOPARAMETERS, method=name,
                              ranks=list(ranks)))
    return configs


def _related_configs(backbone: str, lora_rank: int) -> list[dict[str, Any]]:
    """Table 1's related methods, each grown to the LoRA row's budget."""
    budget = adapter_parameters({"method": "lora", "ranks": lora_rank}, backbone)
    info = get_backbone(backbone)

    sizes = (info.d_model, info.d_model, 3, info.n_layers)
    # FacT-TK: one Tucker rank for every mode of the stacked tensor.
    fact = {"method": "qkv_depth", "ranks": [min(FACT_RANK, s) for s in sizes]}

    def lotr(method: str) -> Callable[[int], dict[str, Any]]:
        # Tucker-2 on Q and V: only Input and Output are compressed.
        def make(r: int) -> dict[str, Any]:
            rest = [2, info.n_layers] if method == "qkv_depth" else [info.n_layers]
            return {"method": method, "ranks": [r, r, *rest], "projections": ["q", "v"]}
        return make

    def cp(projections: list[str]) -> Callable[[int], dict[str, Any]]:
        def make(r: int) -> dict[str, Any]:
            return {"method": "att_qkv_depth", "factorization": "cp", "ranks": r,
                    "projections": projections}
        return make

    related = {
        "lotr-qkv_depth": lotr("qkv_depth"),
        "lotr-depth": lotr("depth"),
        "lorta": cp(["q", "k", "v", "o"]),
        "cara": cp(["q", "k", "v"]),
    }
    return [_entry("fact", RELATED, **fact)] + [
        _entry(tag, RELATED, **closest_to_budget(make, budget, backbone))
        for tag, make in related.items()
    ]


def paper_table2(
    task: str,
    backbone: str | None = None,
    seeds: int = 5,
    lora_rank: int = 4,
    related: bool = True,
) -> dict[str, Any]:
    """The paper's Table 2 on one task, ``seeds`` seeds per row."""
    backbone = backbone or default_backbone(task)
    configs = _table2_configs(backbone, lora_rank)
    if related:
        configs += _related_configs(backbone, lora_rank)
    return {
        "name": f"paper-table2-{task}-{backbone}",
        "base": _base(task, backbone),
        "configs": configs,
        "grid": {"seed": _seed_list(seeds)},
    }


def core_lr(
    task: str,
    backbone: str | None = None,
    seeds: int = 5,
    method: str = "att_qkv_depth",
    rank: int = 8,
    multipliers: Sequence[float] = CORE_LR_MULTIPLIERS,
) -> dict[str, Any]:
    """TensLoRA+: the Tucker core's learning rate at ``lr x m`` for each multiplier ``m``.

    Default adapter: the TensLoRA+ study's Att_QKV_Depth at rank 8 on every mode.
    """
    backbone = backbone or default_backbone(task)
    adapter = {"method": method, "factorization": "tucker", "ranks": rank}
    configs = [
        {"tag": f"{method}-core_lr_x{m:g}", "adapter": dict(adapter),
         "optim": {"core_lr_multiplier": float(m)}}
        for m in multipliers
    ]
    return {
        "name": f"core-lr-{task}-{backbone}",
        "base": _base(task, backbone),
        "configs": configs,
        "grid": {"seed": _seed_list(seeds)},
    }


def allocate(
    runs: Sequence[Mapping[str, Any]],
    seeds: int = 5,
    name: str = "allocate",
    *,
    shrink_top1: float = SHRINK_TOP1,
    grow_entropy: float = GROW_ENTROPY,
    only_changed: bool = False,
) -> dict[str, Any]:
    """A sweep of the allocator's ranks for each Tucker adapter among finished ``runs``.

    ``runs``: ``[{"config": job spec, "spectra_metrics": {metric name: last value}}]``. Runs
    that differ only in seed are one adapter; their spectra are averaged
    (``tenslora.core.metric_contract.allocator_input``). ``shrink_top1`` and ``grow_entropy`` are
    ``allocate_ranks``'s thresholds. ``only_changed``: leave out the adapters whose ranks the
    allocator kept (their rows would repeat the source runs). Raises ValueError when no run is a
    Tucker tensor adapter with spectrum metrics, or when ``only_changed`` leaves no row.
    """
    thresholds = {"shrink_top1": shrink_top1, "grow_entropy": grow_entropy}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        spec = run["config"]
        adapter = spec.get("adapter") or {}
        if spec.get("kind") != "train" or adapter.get("method", "lora") == "lora" \
                or adapter.get("factorization", "tucker") != "tucker":
            continue
        key = json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(run)
    configs = [entry for group in groups.values()
               if (entry := _allocated_entry(group, thresholds))]
    if not configs:
        raise ValueError(
            "the sweep has no succeeded Tucker tensor-adapter job with spectrum metrics "
            f"({', '.join(p + '*' for p in SPECTRUM_PREFIXES)}) to allocate ranks from"
        )
    changed = [entry for entry in configs if entry.pop("changed")]
    if only_changed:
        configs = changed
        if not configs:
            raise ValueError(
                "the allocator kept the ranks of every adapter (no mode has a top-1 energy of "
                f"{shrink_top1} or more): nothing to run; a lower shrink_top1 compresses more"
            )
    base = {k: v for k, v in configs[0].pop("spec").items() if k not in ("tag", "seed", "adapter")}
    for entry in configs[1:]:
        spec = entry.pop("spec")
        entry.update({k: v for k, v in spec.items()
                      if k not in ("tag", "seed", "adapter") and base.get(k) != v})
    return {"name": name, "base": base, "configs": configs, "grid": {"seed": _seed_list(seeds)}}


def _allocated_entry(group: list[Mapping[str, Any]], thresholds: Mapping[str, float]
                     ) -> dict[str, Any] | None:
    spec = group[0]["config"]
    config = AdapterConfig.from_dict(spec["adapter"])
    current = config.mode_ranks()
    spectra = allocator_input([run["spectra_metrics"] for run in group], current)
    if set(spectra) != set(current):
        return None
    info = get_backbone(spec["backbone"])
    budget = predict_parameters(config, info.d_model, info.n_layers, info.n_heads)
    ranks = allocate_ranks(spectra, config.method, budget, info.d_model, info.n_layers,
                           info.n_heads, n_projections=config.n_projections,
                           shrink_top1=thresholds["shrink_top1"],
                           grow_entropy=thresholds["grow_entropy"])
    tag = spec.get("tag") or config.method
    adapter = {**spec["adapter"], "ranks": [ranks[mode] for mode in config.modes]}
    return {"tag": f"{tag}-allocated", "adapter": adapter, "spec": dict(spec),
            "changed": ranks != current}


def _seed_list(seeds: int) -> list[int]:
    if seeds < 1:
        raise ValueError(f"seeds must be a positive integer; got {seeds}")
    return list(range(seeds))


def set_base_value(sweep: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.path=value`` to the sweep's ``base``; the value is read as YAML (50, null)."""
    import yaml

    path, sep, raw = assignment.partition("=")
    if not sep or not path.strip():
        raise ValueError(f"--set needs dotted.path=value; got {assignment!r}")
    keys = path.strip().split(".")
    node = sweep["base"]
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {path}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def expand_jobs(sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The job specs a sweep document stands for (configs x grid), before validation.

    The service does the same expansion when the document is posted; this one serves previews
    and tests that must not need the service.
    """
    import itertools

    jobs = []
    grid = sweep.get("grid") or {}
    for entry in sweep.get("configs") or [{}]:
        for values in itertools.product(*grid.values()):
            spec = deep_merge(sweep["base"], entry)
            for path, value in zip(grid, values, strict=True):
                set_path(spec, path, value)
            jobs.append(spec)
    return jobs
