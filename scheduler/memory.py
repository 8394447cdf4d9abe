"""Memory estimate of a job, so a claim only hands out what fits the worker's free memory.

Synthetic jobs state theirs. Train jobs start from a formula and switch to the largest peak that
finished jobs of the same shape (backbone, batch, sequence length, precision) reported. A reported
peak must be one the job's device could hold (``check_peak``); an admin can list what was learned
and forget it (``list_estimates``, ``reset_estimate``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from protocol.vocabulary import JobStatus
from scheduler.errors import InvalidInput, NotFound
from scheduler.models import OBSERVED_MEMORY, Job, ObservedMemory, utcnow
from scheduler.upsert import upsert
from tenslora.core.catalog import BACKBONES
from tenslora.core.job_spec import SyntheticSpec, TrainSpec, parse_spec

# A CUDA context, the allocator's slack and the framework: paid once per process.
RUNTIME_OVERHEAD_MB = 500
# Stored activations per token per million backbone parameters at 2 bytes a value. Calibrated
# on BERT-base (110M, ~0.6 MB per token in half precision, Korthikanti et al.'s 34*h*L bytes).
ACTIVATION_MB_PER_TOKEN_PER_MPARAM = 0.0055
# ViT-base at 224 px with 16 px patches sees 196 patches and the class token.
IMAGE_TOKENS = 197
MAX_ESTIMATE_MB = 10**12


def shape_key(spec: TrainSpec | SyntheticSpec) -> str | None:
    """Jobs with equal keys use the same memory; synthetic jobs have no shape."""
    if not isinstance(spec, TrainSpec):
        return None
    loop = spec.train
    return f"{spec.backbone}|batch={loop.batch_size}|len={loop.max_length}|{loop.precision}"


def _value_bytes(spec: TrainSpec) -> int:
    return 2 if spec.train.precision in ("bf16", "fp16") else 4


def backbone_memory_mb(spec: TrainSpec) -> int:
    """What a process pays once, whatever it trains: runtime overhead and the frozen weights."""
    weights_mb = BACKBONES[spec.backbone].params_millions * 1e6 * _value_bytes(spec) / 2**20
    return int(RUNTIME_OVERHEAD_MB + weights_mb)


def activation_memory_mb(spec: TrainSpec) -> int:
    """What one job's batch adds: its stored activations (a pack stacks one batch per job)."""
    backbone = BACKBONES[spec.backbone]
    tokens = spec.train.max_length if backbone.modality == "text" else IMAGE_TOKENS
    return int(
        spec.train.batch_size
        * tokens
        * backbone.params_millions
        * ACTIVATION_MB_PER_TOKEN_PER_MPARAM
        * _value_bytes(spec)
        / 2
    )


def formula_memory_mb(spec: TrainSpec) -> int:
    """Weights + stored activations + runtime overhead, in MiB (``auto`` counts as fp32)."""
    return min(backbone_memory_mb(spec) + activation_memory_mb(spec), MAX_ESTIMATE_MB)


SHARE_SUFFIX = "|pack-share"


def share_key(key: str) -> str:
    """Where the observed per-job share of packs of jobs of shape ``key`` is remembered."""
    return f"{key}{SHARE_SUFFIX}"


def pack_memory_mb(spec: TrainSpec, observed: dict[str, int]) -> tuple[int, int]:
    """(once per pack, per job of the pack) in MiB for packs of jobs shaped like ``spec``.

    The share starts at the formula's activations and becomes the largest per-job share a
    finished pack of that shape reported (its peak minus the backbone, over its jobs).
    """
    base = backbone_memory_mb(spec)
    key = shape_key(spec)
    learned = observed.get(share_key(key)) if key else None
    share = learned if learned is not None else activation_memory_mb(spec)
    return base, max(1, min(share, MAX_ESTIMATE_MB))


def pack_share_mb(spec: TrainSpec, pack_peak_mb: int, pack_size: int) -> int:
    """The per-job share that a pack of ``pack_size`` jobs peaking at ``pack_peak_mb`` shows."""
    return max(1, -(-(pack_peak_mb - backbone_memory_mb(spec)) // max(1, pack_size)))


def observed_peaks(session: Session, keys: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(ObservedMemory.shape_key, ObservedMemory.peak_memory_mb).where(
            ObservedMemory.shape_key.in_(wanted)
        )
    )
    return {key: peak for key, peak in rows}


def estimate_memory_mb(spec: TrainSpec | SyntheticSpec, observed: dict[str, int]) -> int:
    if isinstance(spec, SyntheticSpec):
        return min(spec.memory_mb, MAX_ESTIMATE_MB)
    key = shape_key(spec)
    return observed[key] if key in observed else formula_memory_mb(spec)


def _keep_larger_peak(new: Any) -> dict[str, Any]:
    old = OBSERVED_MEMORY.c.peak_memory_mb
    return {
        "peak_memory_mb": case((new.peak_memory_mb > old, new.peak_memory_mb), else_=old),
        "updated_at": new.updated_at,
    }


def record_peak(session: Session, key: str, peak_mb: int, now: datetime | None = None) -> None:
    """Remember the largest peak of ``key`` and re-estimate queued jobs of that shape."""
    now = now or utcnow()
    peak_mb = max(0, min(int(peak_mb), MAX_ESTIMATE_MB))
    upsert(
        session,
        OBSERVED_MEMORY,
        {"shape_key": key, "peak_memory_mb": peak_mb, "updated_at": now},
        key=["shape_key"],
        updates=_keep_larger_peak,
    )
    largest = session.scalar(
        select(ObservedMemory.peak_memory_mb).where(ObservedMemory.shape_key == key)
    )
    session.execute(
        update(Job)
        .where(Job.shape_key == key, Job.status == JobStatus.queued.value)
        .values(memory_estimate_mb=largest)
        .execution_options(synchronize_session=False)
    )


def check_peak(peak_mb: Any, device_memory_mb: int | None) -> None:
    """``InvalidInput`` unless ``peak_mb`` is a peak the job's device could have shown: a finite,
    positive number of MiB, at most ``device_memory_mb`` (what its claim declared)."""
    if isinstance(peak_mb, bool) or not isinstance(peak_mb, int | float) or not (
        math.isfinite(peak_mb) and peak_mb > 0
    ):
        raise InvalidInput(
            f"result.peak_memory_mb must be a positive, finite number of MiB; got {peak_mb!r}"
        )
    bound = device_memory_mb or MAX_ESTIMATE_MB
    if peak_mb > bound:
        raise InvalidInput(
            f"result.peak_memory_mb is {peak_mb:g} MiB, more than the {bound} MiB the job's "
            "device holds (as its claim declared); nothing was stored"
        )


@dataclass(frozen=True)
class ShapeEstimate:
    """What was learned about one shape's memory, and what its jobs would get without it."""

    shape: str
    peak_memory_mb: int | None
    pack_share_mb: int | None
    formula_mb: int | None
    queued_jobs: int
    updated_at: datetime | None


def list_estimates(session: Session) -> list[ShapeEstimate]:
    """Every shape with a learned peak or pack share, by shape."""
    learned: dict[str, dict[str, Any]] = {}
    for row in session.execute(select(ObservedMemory)).scalars():
        shape = row.shape_key.removesuffix(SHARE_SUFFIX)
        entry = learned.setdefault(shape, {"updated_at": row.updated_at})
        entry["pack_share_mb" if row.shape_key != shape else "peak_memory_mb"] = row.peak_memory_mb
        entry["updated_at"] = max(entry["updated_at"], row.updated_at)
    queued = _queued_jobs(session, list(learned))
    return [
        ShapeEstimate(shape, entry.get("peak_memory_mb"), entry.get("pack_share_mb"),
                      _formula_of(session, shape), queued.get(shape, 0), entry["updated_at"])
        for shape, entry in sorted(learned.items())
    ]


def reset_estimate(session: Session, shape: str) -> ShapeEstimate:
    """Forget the learned peak and pack share of ``shape``: its queued jobs go back to the formula.

    ``NotFound`` when nothing was learned for it.
    """
    learned = ObservedMemory.shape_key.in_([shape, share_key(shape)])
    if not session.scalar(select(func.count()).where(learned)):
        raise NotFound(f"no learned estimate for shape {shape!r} (`tenslora estimates list` "
                       "shows them)")
    session.execute(delete(ObservedMemory).where(learned))
    formula = _formula_of(session, shape)
    if formula is not None:
        session.execute(
            update(Job)
            .where(Job.shape_key == shape, Job.status == JobStatus.queued.value)
            .values(memory_estimate_mb=formula)
            .execution_options(synchronize_session=False)
        )
    return ShapeEstimate(
        shape, None, None, formula, _queued_jobs(session, [shape]).get(shape, 0), None
    )


def _queued_jobs(session: Session, shapes: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(Job.shape_key, func.count())
        .where(Job.shape_key.in_(shapes), Job.status == JobStatus.queued.value)
        .group_by(Job.shape_key)
    )
    return {shape: count for shape, count in rows if shape is not None}


def _formula_of(session: Session, shape: str) -> int | None:
    """The formula's estimate for ``shape``, from the spec of one stored job of that shape (the
    formula reads only what the shape key holds)."""
    config = session.scalar(select(Job.config).where(Job.shape_key == shape).limit(1))
    spec = parse_spec(config) if config is not None else None
    return formula_memory_mb(spec) if isinstance(spec, TrainSpec) else None
