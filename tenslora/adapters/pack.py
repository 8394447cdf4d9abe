"""Packs: the adapters of k jobs over one frozen backbone, each job's update on its own rows
(docs/training.md, "Packs"; mLoRA's BatchLoRA, HFTA's horizontal fusion).

The k jobs' batches are concatenated along the batch dimension and the frozen backbone runs once.
:class:`PackState` says which rows belong to which job in the running forward pass, and every
module that would otherwise mix jobs reads it:

- each targeted projection becomes a :class:`PackedLinear` (job j's adapter update on rows j
  only);
- each ``nn.Dropout`` becomes a :class:`PackDropout` that draws job j's mask from job j's own
  generator, and the attention probabilities are dropped out the same way (the ``tenslora_pack``
  attention function);
- the task head becomes a :class:`PackedHead` over one head per job.

A job's dropout masks are drawn at its own batch's length (its longest example) and padded to the
pack's: positions past it are padding for every row of the job, which no real token attends to,
so a job's masks do not depend on how long the other jobs' sentences are. With that, a job's
numbers do not depend on its pack: a pack of one is a single run.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tenslora.adapters.adapter import SliceInfo, TensLoRAAdapter
from tenslora.adapters.inject import find_layout, replace_linear
from tenslora.adapters.layers import WrappedLinear
from tenslora.adapters.model import ADAPTER_ATTRIBUTE
from tenslora.core.adapter_config import AdapterConfig
from tenslora.core.methods import PROJECTIONS

ATTENTION = "tenslora_pack"
#: attribute of each attention module holding its PackState, for the attention function
PACK_ATTRIBUTE = "tenslora_pack"


class PackJob(nn.Module):
    """One job's trainable part: its adapter (as ``tenslora_adapter``) and its own copy of the
    task head (under the backbone's head names), so the one-model helpers (``mode_parameters``,
    ``mode_spectra``, ``param_groups``, ``save_adapter``) read a job as an adapted model."""

    def __init__(self, index: int, adapter: TensLoRAAdapter, heads: dict[str, nn.Module],
                 generator: torch.Generator) -> None:
        super().__init__()
        self.index = index
        #: the job's dropout stream (backbone, adapter and head dropout alike)
        self.generator = generator
        self.add_module(ADAPTER_ATTRIBUTE, adapter)
        for name, head in heads.items():
            self.add_module(name, head)
        adapter.train_head = True
        adapter.head_names = list(heads)

    @property
    def adapter(self) -> TensLoRAAdapter:
        adapter = getattr(self, ADAPTER_ATTRIBUTE)
        assert isinstance(adapter, TensLoRAAdapter)
        return adapter


class PackState:
    """The jobs of a pack and the rows each active job holds in the running forward pass."""

    def __init__(self) -> None:
        self.jobs: list[PackJob] = []
        #: (job index, its rows) in row order, for the running forward pass
        self.active: list[tuple[int, slice]] = []
        #: the batch's sequence length, and each active job's own (None: all the batch's)
        self.seq_len: int | None = None
        self.lengths: list[int] | None = None

    def adapter(self, job: int) -> TensLoRAAdapter:
        return self.jobs[job].adapter

    def assign(self, jobs: Sequence[int], rows_each: int, seq_len: int | None,
               lengths: Sequence[int] | None = None) -> None:
        """The next forward pass holds ``rows_each`` rows of each of ``jobs``, in that order;
        ``lengths[i]``: the longest example of job ``jobs[i]`` (tokens, padding excluded)."""
        self.active = [(j, slice(i * rows_each, (i + 1) * rows_each)) for i, j in enumerate(jobs)]
        self.seq_len = seq_len
        self.lengths = None if lengths is None else list(lengths)

    @property
    def ragged(self) -> bool:
        """Some active job's examples are all shorter than the batch (it is padded for others)."""
        return self.lengths is not None and any(n != self.seq_len for n in self.lengths)

    def own(self, position: int, x: torch.Tensor) -> tuple[tuple[slice, ...], int]:
        """The index of the ``position``-th active job's rows of ``x`` (cut at its own length
        when ``x`` is a (batch, sequence, ...) tensor of a ragged pass), and the padding that
        brings a result computed there back to the batch's length."""
        rows = self.active[position][1]
        if not self.ragged or x.dim() < 3 or x.shape[1] != self.seq_len:
            return (rows,), 0
        assert self.lengths is not None and self.seq_len is not None
        own = self.lengths[position]
        return (rows, slice(0, own)), self.seq_len - own

    def start_forward(self, *_: Any) -> None:
        for job, _rows in self.active:
            self.adapter(job).start_forward()

    def end_forward(self, *_: Any) -> None:
        for job, _rows in self.active:
            self.adapter(job).end_forward()

    def dropout(self, x: torch.Tensor, p: float, seq_dims: tuple[int, ...],
                job: int | None = None) -> torch.Tensor:
        """Inverted dropout of ``x``: job ``job``'s alone, or the active jobs' rows, each job's
        mask from its own generator. ``seq_dims`` are the sequence dimensions of ``x``."""
        if job is not None:
            position = next(i for i, (j, _) in enumerate(self.active) if j == job)
            return x * self._mask(position, x.shape, seq_dims, p, x)
        masks = [self._mask(i, (rows.stop - rows.start, *x.shape[1:]), seq_dims, p, x)
                 for i, (_, rows) in enumerate(self.active)]
        return x * (masks[0] if len(masks) == 1 else torch.cat(masks))

    def _mask(self, position: int, shape: Sequence[int], seq_dims: tuple[int, ...], p: float,
              like: torch.Tensor) -> torch.Tensor:
        """The mask of the ``position``-th active job, drawn at its own length along the
        sequence dimensions and padded (with zeros: padding) to the batch's."""
        own = None if self.lengths is None else self.lengths[position]
        full = list(shape)
        if own is not None:
            for dim in seq_dims:
                if shape[dim] == self.seq_len:
                    full[dim] = min(own, shape[dim])
        keep = torch.empty(full, dtype=like.dtype, device=like.device)
        keep.bernoulli_(1.0 - p, generator=self.jobs[self.active[position][0]].generator)
        keep.mul_(1.0 / (1.0 - p))
        if full == list(shape):
            return keep
        padding = [side for dim in reversed(range(len(shape)))
                   for side in (0, shape[dim] - full[dim])]
        return F.pad(keep, padding)



class PackedLinear(WrappedLinear):
    """``y = W x + b``, plus, on the rows of each job of the pack that adapts this projection,
    that job's ``s * (x U_in) Up^T`` (mLoRA's BatchLoRA: one frozen matmul, a slice per job)."""

    _pack: PackState

    def __init__(self, base_layer: nn.Linear, pack: PackState,
                 slices: dict[int, SliceInfo]) -> None:
        super().__init__(base_layer)
        object.__setattr__(self, "_pack", pack)  # shared by every packed module, not a child
        #: job index -> where this projection's update lives in that job's adapter
        self.slices = slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        updates: list[torch.Tensor | None] = []
        for position, (job, _rows) in enumerate(self._pack.active):
            info = self.slices.get(job)
            if info is None:
                updates.append(None)
                continue
            # At the job's own length: the shapes, hence the rounding, of the job alone.
            own, padding = self._pack.own(position, x)
            update = self._pack.adapter(job).update(info, x, own)
            updates.append(F.pad(update, (0, 0, 0, padding)) if padding else update)
        if all(u is None for u in updates):
            return y
        if len(updates) == 1:
            return y + updates[0].to(y.dtype)  # type: ignore[union-attr]
        full = [
            y.new_zeros((rows.stop - rows.start, *y.shape[1:])) if u is None else u.to(y.dtype)
            for u, (_, rows) in zip(updates, self._pack.active, strict=True)
        ]
        return y + torch.cat(full)

    def extra_repr(self) -> str:
        return f"jobs={sorted(self.slices)}"


class PackDropout(nn.Module):
    """``nn.Dropout`` drawing each job's mask from its generator (only ``job``'s when set)."""

    _pack: PackState

    def __init__(self, p: float, pack: PackState, job: int | None = None) -> None:
        super().__init__()
        self.p = p  # read by transformers' attention modules for their probability dropout
        object.__setattr__(self, "_pack", pack)
        self.job = job

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return self._pack.dropout(x, self.p, (1,) if x.dim() == 3 else (), self.job)

    def extra_repr(self) -> str:
        return f"p={self.p}, job={self.job}"


class PackedHead(nn.Module):
    """The task head: job j's own head on rows j."""

    _pack: PackState

    def __init__(self, pack: PackState, name: str) -> None:
        super().__init__()
        object.__setattr__(self, "_pack", pack)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [getattr(self._pack.jobs[j], self.name)(x[rows]) for j, rows in self._pack.active]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _pack_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                    value: torch.Tensor, attention_mask: torch.Tensor | None,
                    scaling: float | None = None, dropout: float = 0.0,
                    **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of a packed backbone: each job's probabilities dropped out with its own
    generator, and, when the jobs' lengths differ, each job's rows attended at its own length
    (so its softmax and matmuls have the shapes, hence the rounding, of the job alone)."""
    pack: PackState | None = getattr(module, PACK_ATTRIBUTE, None)
    if pack is None or not pack.ragged:
        return _attend(pack, None, module, query, key, value, attention_mask, scaling, dropout,
                       **kwargs)
    assert pack.lengths is not None and pack.seq_len is not None
    outputs = []
    for (job, rows), own in zip(pack.active, pack.lengths, strict=True):
        cut = (rows, slice(None), slice(0, own))
        mask = None if attention_mask is None else attention_mask[(*cut, slice(0, own))]
        out, _ = _attend(pack, job, module, query[cut], key[cut], value[cut], mask, scaling,
                         dropout, **kwargs)
        outputs.append(F.pad(out, (0, 0, 0, 0, 0, pack.seq_len - own)))  # (rows, seq, heads, d)
    return torch.cat(outputs), None


def _attend(pack: PackState | None, job: int | None, module: nn.Module, query: torch.Tensor,
            key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None,
            scaling: float | None, dropout: float,
            **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' eager attention with the pack's dropout; SDPA when nothing is dropped."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or pack is None:
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.to(query.dtype)
        return sdpa_attention_forward(module, query, key, value, attention_mask,  # type: ignore[no-any-return]
                                      scaling=scaling, dropout=dropout, **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = pack.dropout(scores.softmax(-1), dropout, (2, 3), job)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION, _pack_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)  # an additive float mask


class Pack(nn.Module):
    """A backbone laid out for k jobs: ``pack(jobs, rows_each, **inputs)`` runs one forward pass
    of the concatenated batches of ``jobs`` and returns the logits, ``rows_each`` rows per job."""

    def __init__(self, model: nn.Module, jobs: Sequence[PackJob], state: PackState) -> None:
        super().__init__()
        self.model = model
        self.jobs = nn.ModuleList(jobs)
        self.state = state

    def job(self, index: int) -> PackJob:
        return self.state.jobs[index]

    def forward(self, jobs: Sequence[int], rows_each: int, lengths: Sequence[int] | None = None,
                **inputs: torch.Tensor) -> torch.Tensor:
        """``lengths[i]``: the longest example of job ``jobs[i]`` in tokens (None: the batch's
        length); it fixes the shape of the job's dropout masks, so it must be the length the job's
        batch alone would be padded to."""
        ids = inputs.get("input_ids")
        self.state.assign(jobs, rows_each, None if ids is None else int(ids.shape[1]), lengths)
        logits: torch.Tensor = self.model(**inputs).logits
        return logits


def _fresh_head(template: nn.Module, std: float, seed: int, pack: PackState,
                job: int) -> nn.Module:
    """A copy of the backbone's head, initialised from the job's seed alone (as transformers
    initialises a new classifier: normal weights, zero biases), its dropout the job's own."""
    head = copy.deepcopy(template)
    generator = torch.Generator().manual_seed(seed)
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    _swap_dropout(head, pack, job)
    return head.requires_grad_(True)


def _swap_dropout(root: nn.Module, pack: PackState, job: int | None) -> None:
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(parent, name, PackDropout(child.p, pack, job))


def build_pack(model: nn.Module, configs: Sequence[AdapterConfig], seeds: Sequence[int], *,
               device: torch.device) -> Pack:
    """Freeze ``model`` (changed in place) and lay one job per config over it, on ``device``.

    Job j's adapter, head and dropout stream are seeded by ``seeds[j]`` only (the adapter by its
    config's seed when that is set).
    """
    _register_attention()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    used = {p for c in configs for p in c.projections}
    layout = find_layout(model, tuple(p for p in PROJECTIONS if p in used))
    head_names = list(layout.head)
    attention = [slots["q"].parent for slots in find_layout(model, ("q",)).layers]
    std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02))
    state = PackState()
    jobs = state.jobs
    for index, (config, seed) in enumerate(zip(configs, seeds, strict=True)):
        if config.seed is None:
            config = dataclasses.replace(config, seed=seed)
        adapter = TensLoRAAdapter(config, find_layout(model, config.projections).shape)
        if config.dropout > 0:
            adapter.dropout = PackDropout(config.dropout, state, index)
        heads = {n: _fresh_head(getattr(model, n), std, seed, state, index) for n in head_names}
        generator = torch.Generator(device=device).manual_seed(seed)
        jobs.append(PackJob(index, adapter, heads, generator))
    for layer, slots in enumerate(layout.layers):
        for projection, slot in slots.items():
            slices = {j.index: j.adapter.slices[layer][own.index(projection)]
                      for j in jobs if projection in (own := j.adapter.config.projections)}

            def wrap(linear: nn.Linear, slices: dict[int, Any] = slices) -> nn.Module:
                return PackedLinear(linear, state, slices)

            replace_linear(slot, wrap)
    _swap_dropout(model, state, None)
    for module in attention:
        setattr(module, PACK_ATTRIBUTE, state)
    for name in head_names:
        setattr(model, name, PackedHead(state, name))
    model.set_attn_implementation(ATTENTION)  # type: ignore[operator]
    layout.trunk.register_forward_pre_hook(state.start_forward)
    layout.trunk.register_forward_hook(state.end_forward)
    return Pack(model, jobs, state).to(device)
