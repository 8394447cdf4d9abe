"""Which train jobs may share one pack: the fields that fix the data stream and the step count.

Torch-free: the scheduler computes ``pack_key`` when it stores a sweep, and the pack trainer checks
that every spec of a pack has the same key. Jobs of one pack read batches of the same shape on the
same steps and evaluate at the same steps; everything else (method, factorization, ranks, scaling,
init, dropout, projections, optimiser settings, seed, tag) may differ between them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tenslora.core.job_spec import SyntheticSpec, TrainSpec

# The TrainLoopSpec fields a pack shares; with the task and the backbone they make the key.
PACK_LOOP_FIELDS: tuple[str, ...] = (
    "epochs",
    "max_steps",
    "batch_size",
    "max_length",
    "eval_every",
    "log_every",
    "precision",
    "max_train_samples",
    "max_eval_samples",
)


def pack_fields(spec: TrainSpec) -> dict[str, Any]:
    """The values a pack's jobs must agree on, by name."""
    loop = spec.train.model_dump()
    return {
        "task": spec.task,
        "backbone": spec.backbone,
        **{name: loop[name] for name in PACK_LOOP_FIELDS},
    }


def pack_key(spec: TrainSpec | SyntheticSpec) -> str | None:
    """Equal for jobs that may train in one pack; None for jobs that never pack (synthetic)."""
    if not isinstance(spec, TrainSpec):
        return None
    canonical = json.dumps(pack_fields(spec), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"{spec.task}|{spec.backbone}|{digest}"


def pack_mismatch(specs: list[TrainSpec]) -> str | None:
    """Why ``specs`` cannot train in one pack (the first field that differs), or None."""
    if not specs:
        return "a pack needs at least one job"
    first = pack_fields(specs[0])
    for index, spec in enumerate(specs[1:], start=1):
        for name, value in pack_fields(spec).items():
            if value != first[name]:
                return f"job {index} has {name}={value!r}, job 0 has {name}={first[name]!r}"
    return None
