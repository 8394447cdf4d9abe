"""The job spec: one fully resolved run, as the service stores it and a worker runs it.

Pydantic only, torch-free: the service validates sweeps with these models and the worker and the
training runner read them. ``kind`` tells the two job kinds apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.catalog import get_backbone, get_task
from tenslora.core.methods import CORE, MODE_NAMES, get_method
from tenslora.core.regimes import ISOPARAMETERS, ISORANK, LORA_REGIME, REGIMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimSpec(_Strict):
    lr: float = Field(5.0e-4, gt=0.0, description="peak learning rate after warmup")
    min_lr: float = Field(0.0, ge=0.0, description="floor of the cosine annealing")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    core_lr_multiplier: float = Field(
        1.0, gt=0.0, description="TensLoRA+: the Tucker core's lr is lr x this"
    )
    mode_lr_multipliers: dict[str, float] = Field(
        default_factory=dict, description="TensLoRA+: per-mode factor lr multipliers"
    )

    @model_validator(mode="after")
    def _check_modes(self) -> OptimSpec:
        allowed = (*MODE_NAMES, CORE)
        bad = sorted(set(self.mode_lr_multipliers) - set(allowed))
        if bad:
            raise ValueError(
                f"mode_lr_multipliers keys must be among {', '.join(allowed)}; got {bad}"
            )
        if any(v <= 0 for v in self.mode_lr_multipliers.values()):
            raise ValueError("mode_lr_multipliers values must be positive")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class TrainLoopSpec(_Strict):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(128, ge=8, description="tokens per text example")
    eval_every: int | None = Field(None, ge=1, description="steps; default once per epoch")
    log_every: int = Field(20, ge=1, description="steps between streamed metric points")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    max_train_samples: int | None = Field(None, ge=1, description="subsample the train split")
    max_eval_samples: int | None = Field(None, ge=1, description="subsample the eval split")


class TrainSpec(_Strict):
    kind: Literal["train"] = "train"
    task: str
    backbone: str
    tag: str | None = None
    regime: Literal[REGIMES] | None = Field(  # type: ignore[valid-type]
        None, description="rank regime of a preset row: lora, isorank, isoparameters or related"
    )
    seed: int = 0
    # The library's own dataclass, not a copy of its fields: pydantic validates it with its checks.
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    train: TrainLoopSpec = Field(default_factory=TrainLoopSpec)

    @model_validator(mode="after")
    def _check_task_and_backbone(self) -> TrainSpec:
        task, backbone = get_task(self.task), get_backbone(self.backbone)
        if task.modality != backbone.modality:
            raise ValueError(
                f"backbone {backbone.name!r} reads {backbone.modality} but task "
                f"{task.name!r} is {task.modality}"
            )
        is_lora = not get_method(self.adapter.method).is_tensor
        if self.regime == LORA_REGIME and not is_lora:
            raise ValueError(
                f"regime 'lora' needs adapter.method lora; got {self.adapter.method!r}"
            )
        if self.regime in (ISORANK, ISOPARAMETERS) and is_lora:
            raise ValueError(f"regime {self.regime!r} needs a tensor method, not lora")
        return self


class SyntheticSpec(_Strict):
    """A dry-run job: sleeps, holds memory on paper, reports ``outcome``."""

    kind: Literal["synthetic"] = "synthetic"
    tag: str | None = None
    seed: int = 0
    duration_s: float = Field(1.0, ge=0.0, le=86_400.0)
    memory_mb: int = Field(100, ge=0)
    outcome: dict[str, float] = Field(default_factory=dict)
    fail: bool = False


JobSpec = Annotated[TrainSpec | SyntheticSpec, Field(discriminator="kind")]
_JOB_SPEC = TypeAdapter(JobSpec)


def parse_spec(data: Any) -> TrainSpec | SyntheticSpec:
    """Validate a plain dict as a job spec (raises ``pydantic.ValidationError``)."""
    return _JOB_SPEC.validate_python(data)


def spec_hash(spec: TrainSpec | SyntheticSpec) -> str:
    """Content hash of a resolved spec: equal runs hash equally, whatever the key order."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_paths() -> tuple[str, ...]:
    """Every dotted path of a job spec, train or synthetic: each object and each of its fields
    (``adapter``, ``adapter.method``, ...). What results may be grouped by. Read from the specs'
    JSON schema, so models and dataclasses (``AdapterConfig``) alike are followed."""
    paths: dict[str, None] = {}

    def walk(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> None:
        for name, field in node.get("properties", {}).items():
            paths[prefix + name] = None
            ref = field.get("$ref") or next(
                (part["$ref"] for part in field.get("allOf", []) if "$ref" in part), None
            )
            if ref is not None:
                walk(defs[ref.rsplit("/", 1)[1]], defs, f"{prefix}{name}.")

    for spec in (TrainSpec, SyntheticSpec):
        schema = spec.model_json_schema()
        walk(schema, schema.get("$defs", {}), "")
    return tuple(paths)
