"""The AtmoRep multiformer, top to bottom: embedding, encoder, decoder, tail, plug-and-play loading.

One transformer per field; tokens are space-time cubes of one level (``data.tokens``). Per field:

1. **Embedding** ``[B, L, T, Y, X, t, y, x] -> [B, S, E]`` with ``S = L*T*Y*X``: a linear map of the
   token's points; hidden tokens get a learned mask embedding instead (see ``masking``); plus a
   linear map of the token metadata (time, place, level; ``data.tokens``) and a fixed sinusoidal
   encoding of the token's (level, time, row, column) index inside the neighbourhood, each axis on its
   own channels (correct for any ``Y != X``; the reference code divided the flat index by ``Y``).
2. **Encoder**: per layer, every field attends with ``heads`` self heads over all its own tokens
   (all levels) and ``coupling_heads`` heads per coupled field (queries from the field, keys and values
   from the other field's layer input, which may have another token count and width). Every field
   reads the *previous* layer's outputs of the others, so the result does not depend on field order.
   Heads over a field's own token grid add a learned relative position bias with a locality prior,
   a sum over the grid's axes that runs on the fused attention kernels (``RelativePositionBias``,
   ``attend``); with ``coupling_position_bias`` so do coupling heads between fields on the same token
   grid (a field and its coarse-model conditioning). Symmetric pre-norm residual blocks
   ``x + attention(LN x)``, ``x + MLP(LN x)`` with one dropout per branch, a standard MLP (no GELU
   after the last linear), one fused QKV projection for self heads, one qk-norm switch for every
   head; ``scaled_dot_product_attention`` picks its own backend.
3. **Decoder** (predicted fields): ``decoder_layers`` blocks of self heads plus cross heads to the
   encoder, layer k attending to encoder layer ``encoder_layers - 1 - k`` (deepest first, as in
   AtmoRep); no cross-field coupling.
4. **Tail**: the decoder outputs of the *target* tokens go to the ensemble tail (``tail``).

The forward takes tensors only: attention maps come from forward hooks (``attention_maps``), so the
whole model compiles into one graph (``compile_model``), and activation checkpointing is an attribute
(``checkpointing_needed`` resolves ``auto`` per device and batch).

Input-only fields (conditioning, forcing) have ``encoder_layers - 1`` layers: their last layer's
output would never be read (coupling heads read layer inputs), and dead parameters confuse optimisers
and tests alike.

Each attention sublayer is a sum over its *sources* of per-source heads (``AttentionHeads``), each with
its own output projection. That equals one projection of the concatenated heads, but lets a field gain a
coupling later: :func:`load_fields` zero-initialises the output of coupling heads missing from the
checkpoint, so a field loaded from a single-field checkpoint computes exactly what it computed before,
and the new heads learn from there (plug-and-play).
"""

from __future__ import annotations

import math
import os
import re

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from torch import nn
from torch.utils.checkpoint import checkpoint

from atmorep_coupler.model.checkpoint import FINETUNED_FORMAT, TRAINER_FORMAT, WEIGHTS_FORMAT, load_state
from atmorep_coupler.data.tokens import META_FEATURES
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.embedding import token_embedding
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.model.tail import EnsembleOutput, EnsembleTail

__all__ = ["Multiformer", "positional_encoding", "load_fields", "load_weights", "compile_model", "checkpointing_needed"]

# --------------------------------------------------------------------------------------- embedding
def positional_encoding(levels: int, T: int, Y: int, X: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal encoding ``[L, T, Y, X, dim]`` of the token indices (level, time, row, column).

    Each axis gets ``dim / 4`` channels: sin and cos of ``index * w_k`` for ``dim / 8`` frequencies
    ``w_k = 100^(-k / (dim/8))`` (wavelengths 2π to ~200π tokens, enough for any neighbourhood).
    Built with ``meshgrid`` on the four axes, so it is exact for non-square token grids.
    """
    n = dim // 8
    freqs = 100.0 ** (-torch.arange(n, dtype=torch.float64) / n)
    axes = torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in (levels, T, Y, X)), indexing="ij")
    parts = []
    for index in axes:
        angle = index[..., None] * freqs
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=-1).float()


class FieldEmbedding(nn.Module):
    def __init__(self, field: FieldConfig):
        super().__init__()
        E = field.embed_dim
        self.token = token_embedding(field)  # linear, or a transformer over the points (``embedding``)
        self.meta = nn.Linear(len(META_FEATURES), E)
        # the learned "hidden token" embedding; input-only fields are never masked
        self.mask = nn.Parameter(0.02 * torch.randn(E)) if field.predicted else None
        position = positional_encoding(field.num_levels, *field.num_tokens, E).flatten(0, 3)
        self.register_buffer("position", position, persistent=False)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, L, T, Y, X, t, y, x]``, hidden ``[B, L, T, Y, X]``, meta ``[..., D]`` -> ``[B, S, E]``."""
        x = self.token(tokens.flatten(5))
        if self.mask is not None:
            x = torch.where(hidden[..., None], self.mask.to(x.dtype), x)
        x = x + self.meta(meta)
        return x.flatten(1, 4) + self.position


# --------------------------------------------------------------------------------------- attention
def _token_coordinates(grid: tuple[int, ...]) -> torch.Tensor:
    """``[axes, S]`` index of every token along each axis of ``grid``, in the model's row-major order."""
    return torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")).flatten(1)


class RelativePositionBias(nn.Module):
    """Learned logit bias of each head over a token grid: a sum over groups of the grid's axes of one learned
    value per head and per offset within the group, ``b_h(i, j) = Σ_g t_h,g[c_g(i) - c_g(j)]``.

    ``grouped`` is the token grid (level, time, row, column) split into consecutive groups of axes
    whose offsets are learned jointly, e.g. ``((5,), (12,), (3,), (6,))`` (every axis on its own) or
    ``((5,), (12, 3, 6))`` (time, row and column together: advection-like offsets). ``c_g(i)`` are
    token ``i``'s indices along the group's axes. The zero offset of every group is pinned at 0: a
    constant added to a group's whole table shifts every score of a query alike, which softmax
    ignores, so it could not learn. Relative position biases: Shaw et al. 2018, T5 (Raffel et al.
    2020), Swin (Liu et al. 2021). Initialised with an ALiBi-style locality prior (Press et al. 2022),
    ``b_h = -m_h |Δ|_1`` with slopes ``m_h = 2^-h`` (head 0 local, later heads nearly global), exact
    for any grouping. Atmospheric fields decorrelate with distance in space and time, so attending to
    neighbours first is the right prior: without it a masked-forecast model stayed at climatology for
    hundreds of steps.

    Why groups, not one value per 4-D offset: the sum factorises exactly into ``Σ_g Π_{a in g} n_a``
    extra query and key channels (:meth:`factors`), ``b_h(i, j) = <u_h(i), e(j)>`` with
    ``u_h(i)[g, k] = t_h,g[c_g(i) - k]`` and the one-hot ``e(j)[g, k] = [c_g(j) = k]``, so attention
    with the bias is plain attention with longer heads and runs on the fused kernels of
    ``scaled_dot_product_attention`` in training and inference, gradient of the bias included. An
    ``[H, S, S]`` bias that needs a gradient forces the unfused kernel (scores materialised, about 3x
    the time of the fused one at S = 1080); one group of all four axes would need S extra channels.
    """

    def __init__(self, grouped: tuple[tuple[int, ...], ...], heads: int):
        super().__init__()
        self.grouped = tuple(tuple(g) for g in grouped)
        self.heads = heads
        coords = _token_coordinates(tuple(n for g in self.grouped for n in g))  # [4, S]
        self.columns, distances, query, key, start, first = [], [], [], [], 1, 0
        for sizes in self.grouped:
            offsets = _token_coordinates(tuple(2 * n - 1 for n in sizes)) - torch.tensor(sizes)[:, None] + 1
            learned = offsets.abs().sum(0) > 0  # every offset but the zero one, in row-major order
            column = torch.zeros(learned.numel(), dtype=torch.long)  # offset -> column of [0 | table]
            column[learned] = torch.arange(start, start + int(learned.sum()))
            start += int(learned.sum())
            self.columns.append(column)
            distances.append(offsets[:, learned].abs().sum(0))
            mine = coords[first:first + len(sizes)]  # [m, S]
            first += len(sizes)
            places = _token_coordinates(sizes)  # [m, K]: every joint position of a key in the group
            query.append(column[_offset_index(mine[:, :, None] - places[:, None, :], sizes)])  # [S, K]
            key.append((mine[:, :, None] == places[:, None, :]).all(0).float())  # [S, K] one-hot
        slopes = 2.0 ** -torch.arange(heads, dtype=torch.float32)
        self.table = nn.Parameter(-slopes[:, None] * torch.cat(distances).float()[None, :])
        self.register_buffer("query_index", torch.cat(query, dim=1), persistent=False)  # [S, Σ_g K_g]
        self.register_buffer("key_onehot", torch.cat(key, dim=1), persistent=False)  # [S, Σ_g K_g]

    def _padded(self) -> torch.Tensor:
        return torch.cat([self.table.new_zeros(self.heads, 1), self.table], dim=1)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Extra query channels ``u [heads, S, Σ_g K_g]`` and key channels ``e [S, Σ_g K_g]``, ``u eᵀ = bias``."""
        S, D = self.query_index.shape
        return self._padded().index_select(1, self.query_index.flatten()).view(self.heads, S, D), self.key_onehot

    def matrix(self) -> torch.Tensor:
        """The bias ``[heads, S, S]`` itself, summed over groups from the offset definition (unfused path)."""
        coords = _token_coordinates(tuple(n for g in self.grouped for n in g)).to(self.table.device)
        table, total, first = self._padded(), 0, 0
        for sizes, column in zip(self.grouped, self.columns):
            mine = coords[first:first + len(sizes)]
            first += len(sizes)
            total = total + table[:, column.to(mine.device)[_offset_index(mine[:, :, None] - mine[:, None, :], sizes)]]
        return total


def _offset_index(delta: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Row-major index of offsets ``delta [m, ...]`` (each ``|Δ_a| < n_a``) among the ``Π (2 n_a - 1)`` offsets."""
    index = torch.zeros_like(delta[0])
    for d, n in zip(delta, sizes):
        index = index * (2 * n - 1) + d + n - 1
    return index


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: RelativePositionBias | None) -> torch.Tensor:
    """``softmax(q kᵀ / √d + bias) v`` for heads ``[B, H, S, d]`` on the fused SDPA kernels.

    With a bias, queries and keys get its factors as extra channels and values get zeros, all
    padded to a multiple of 8 channels (the fused CPU and CUDA kernels want one head size for q, k
    and v); the scale stays ``1/√d`` of the real head size. ``scaled_dot_product_attention`` picks its
    backend.
    """
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v)
    B, H, S, d = q.shape
    u, e = bias.factors()
    extra = u.shape[-1]
    zeros = q.new_zeros(()).expand(B, H, S, -(d + extra) % 8)
    scale = d**-0.5
    q = torch.cat([q, (u / scale).to(q.dtype).expand(B, H, S, extra), zeros], dim=-1)
    k = torch.cat([k, e.to(k.dtype).expand(B, H, S, extra), zeros], dim=-1)
    v = F.pad(v, (0, q.shape[-1] - d))
    return F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :d]


def attention_weights(q: torch.Tensor, k: torch.Tensor, bias: RelativePositionBias | None) -> torch.Tensor:
    """The explicit (unfused) weights ``softmax(q kᵀ / √d + bias)``, ``[B, H, S_query, S_key]``."""
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    return torch.softmax(logits if bias is None else logits + bias.matrix().to(logits.dtype), dim=-1)


class AttentionHeads(nn.Module):
    """``heads`` attention heads with queries from ``x`` and keys/values from ``source`` (or ``x``).

    Self heads (``source_dim=None``) project queries, keys and values in one matrix; cross heads
    project queries from ``x`` and keys and values from ``source``, which may have another token
    count and width. Queries and keys are LayerNormed per head when ``qk_norm`` (one switch for all
    heads). Heads whose queries and keys lie on one token grid (``grid``: self heads, decoder
    heads, same-grid coupling heads) add a :class:`RelativePositionBias`. The output is projected
    back to ``x``'s width.
    """

    def __init__(self, dim: int, source_dim: int | None, heads: int, head_dim: int, qk_norm: bool,
                 grid: tuple[tuple[int, ...], ...] | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        if source_dim is None:
            self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        else:
            self.q = nn.Linear(dim, heads * head_dim, bias=False)
            self.kv = nn.Linear(source_dim, 2 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.bias = RelativePositionBias(grid, heads) if grid is not None else None

    def project(self, x: torch.Tensor, source: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values ``[B, heads, S, head_dim]``."""
        B, S, _ = x.shape
        if source is None:
            q, k, v = self.qkv(x).view(B, S, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        else:
            q = self.q(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
            k, v = self.kv(source).view(B, source.shape[1], 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        o = attend(*self.project(x, source), self.bias)
        return self.out(o.transpose(1, 2).flatten(2))

    def weights(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights ``[B, heads, S_query, S_key]`` of the call ``self(x, source)``."""
        q, k, _ = self.project(x, source)
        return attention_weights(q, k, self.bias)


def _grid(field: FieldConfig, config: ModelConfig) -> tuple[tuple[int, ...], ...] | None:
    """The field's token grid (levels, T, Y, X) in ``position_bias_groups``, if it gets position biases."""
    if not config.relative_position_bias:
        return None
    grid, first = (field.num_levels, *field.num_tokens), 0
    groups = []
    for count in config.position_bias_groups:
        groups.append(grid[first:first + count])
        first += count
    return tuple(groups)


def _coupling_grid(field: FieldConfig, source: FieldConfig, config: ModelConfig) -> tuple[tuple[int, ...], ...] | None:
    """The shared token grid of a coupling head's queries and keys, if it gets a position bias."""
    grid = _grid(field, config)
    return grid if config.coupling_position_bias and grid == _grid(source, config) else None


class MLP(nn.Module):
    """``W2 GELU(W1 x)``: no activation after the last linear map."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(round(dim * ratio))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


# ---------------------------------------------------------------------------------- encoder, decoder
class EncoderLayer(nn.Module):
    """``x + attention(LN x)``, then ``x + MLP(LN x)``: self heads over the field's tokens plus
    coupling heads to each coupled field, summed (one dropout per residual branch)."""

    def __init__(self, field: FieldConfig, widths: Mapping[str, int], config: ModelConfig):
        super().__init__()
        E, head_dim = field.embed_dim, field.embed_dim // config.heads
        self.name = field.name
        self.attention_norm = nn.LayerNorm(E)
        self.heads = nn.ModuleDict(
            {field.name: AttentionHeads(E, None, config.heads, head_dim, config.qk_norm, _grid(field, config))})
        for source in field.coupled_fields:
            self.heads[source] = AttentionHeads(E, widths[source], config.coupling_heads, head_dim, config.qk_norm,
                                                _coupling_grid(field, config.field(source), config))
        self.mlp_norm = nn.LayerNorm(E)
        self.mlp = MLP(E, config.mlp_ratio)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, sources: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sources[j]``: the (non-affine LayerNormed) layer input of each coupled field ``j``."""
        h = self.attention_norm(x)
        x = x + self.dropout(sum(heads(h, None if name == self.name else sources[name])
                                 for name, heads in self.heads.items()))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class DecoderLayer(nn.Module):
    """The same block with self heads plus cross heads to one encoder layer's output (``memory``)."""

    def __init__(self, field: FieldConfig, config: ModelConfig):
        super().__init__()
        E, head_dim = field.embed_dim, field.embed_dim // config.heads
        self_heads = config.heads // 2
        grid = _grid(field, config)
        self.attention_norm = nn.LayerNorm(E)
        self.memory_norm = nn.LayerNorm(E)
        self.heads = nn.ModuleDict()
        if self_heads:
            self.heads["self"] = AttentionHeads(E, None, self_heads, head_dim, config.qk_norm, grid)
        self.heads["encoder"] = AttentionHeads(E, E, config.heads - self_heads, head_dim, config.qk_norm, grid)
        self.mlp_norm = nn.LayerNorm(E)
        self.mlp = MLP(E, config.mlp_ratio)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = self.attention_norm(x)
        sources = {"self": None, "encoder": self.memory_norm(memory)}
        x = x + self.dropout(sum(heads(h, sources[name]) for name, heads in self.heads.items()))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


# ------------------------------------------------------------------------------------------ model
class FieldModule(nn.Module):
    """All parameters of one field, so that a field can be saved, loaded and frozen as a unit."""

    def __init__(self, field: FieldConfig, widths: Mapping[str, int], config: ModelConfig):
        super().__init__()
        self.embedding = FieldEmbedding(field)
        layers = config.encoder_layers if field.predicted else config.encoder_layers - 1
        self.encoder = nn.ModuleList(EncoderLayer(field, widths, config) for _ in range(layers))
        if field.predicted:
            self.decoder = nn.ModuleList(DecoderLayer(field, config) for _ in range(config.decoder_layers))
            self.tail = EnsembleTail(field.embed_dim, field.token_size, config.ensemble_size, config.tail_hidden_layers)


class Multiformer(nn.Module):
    """Forward: masked tokens and metadata of every field -> ensemble predictions of the targets.

    ``activation_checkpointing`` (attribute, from the config; ``"auto"`` is resolved by the caller
    that knows device and batch, see :func:`checkpointing_needed`) recomputes each layer in the
    backward pass instead of keeping its activations.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.activation_checkpointing = config.activation_checkpointing is True
        widths = {f.name: f.embed_dim for f in config.fields}
        self.fields = nn.ModuleDict({f.name: FieldModule(f, widths, config) for f in config.fields})
        self._coupled = sorted({f.name for g in config.fields for f in config.fields if f.name in g.coupled_fields})

    def forward(self, masked: Mapping[str, MaskedField], meta: Mapping[str, torch.Tensor]) -> dict[str, EnsembleOutput]:
        x = {name: self.fields[name].embedding(m.inputs, m.hidden, meta[name]) for name, m in masked.items()}
        # a field left out of ``masked`` (one no given field reads, e.g. a downscaled field) is not run
        skips: dict[str, list[torch.Tensor]] = {f.name: [] for f in self.config.predicted_fields if f.name in masked}
        for layer in range(self.config.encoder_layers):
            sources = {j: F.layer_norm(x[j], x[j].shape[-1:]) for j in self._coupled}
            x = {name: self._run(self.fields[name].encoder[layer], x[name], sources)
                 for name in x if layer < len(self.fields[name].encoder)}
            for name in skips:
                skips[name].append(x[name])
        out = {}
        for name, enc in skips.items():
            field = self.fields[name]
            y = enc[-1]
            for k, layer in enumerate(field.decoder):
                y = self._run(layer, y, enc[-1 - k])
            out[name] = field.tail(y[masked[name].target.flatten(1)])
        return out

    def _run(self, layer: nn.Module, x: torch.Tensor, other) -> torch.Tensor:
        """One layer, under activation checkpointing when switched on (training only)."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, x, other, use_reentrant=False)
        return layer(x, other)

    @torch.no_grad()
    def attention_maps(self, masked: Mapping[str, MaskedField],
                       meta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Attention weights ``[B, heads, S_query, S_key]`` of every head group, keyed by its module
        name, e.g. ``fields.temperature.encoder.0.heads.u_component_of_wind`` (a coupling),
        ``fields.temperature.encoder.0.heads.temperature`` (self heads) or
        ``fields.temperature.decoder.1.heads.encoder``.

        Forward hooks recompute the weights of each head group from the inputs of its fused call, so
        the forward itself has no switch for this (and compiles as one graph).
        """
        maps: dict[str, torch.Tensor] = {}

        def keep(name: str):
            return lambda module, args, _output: maps.__setitem__(name, module.weights(*args))

        hooks = [m.register_forward_hook(keep(n)) for n, m in self.named_modules() if isinstance(m, AttentionHeads)]
        try:
            self.forward(masked, meta)
        finally:
            for hook in hooks:
                hook.remove()
        return maps


# ------------------------------------------------------------------ execution: checkpointing, compiling
def activation_bytes(config: ModelConfig, batch_size: int, element_size: int = 4) -> int:
    """Estimated bytes of the activations a training forward keeps for the backward pass (no checkpointing).

    Per layer and token: ``ACTIVATION_WIDTHS`` times the width (norms, projections, residuals) plus the
    MLP's hidden layer twice, and per head group its queries, keys, values and output at the padded
    head size of :func:`attend` plus an output projection input. Within 20 % of the saved tensors
    measured in the tests.
    """
    def heads_width(field: FieldConfig, heads: int, grid) -> int:
        d = field.embed_dim // config.heads
        extra = sum(math.prod(g) for g in grid) if grid is not None else 0
        return 4 * heads * (d + extra + (-(d + extra) % 8)) + field.embed_dim

    total = 0
    for f in config.fields:
        grid = _grid(f, config)
        encoder = heads_width(f, config.heads, grid) + sum(
            heads_width(f, config.coupling_heads, _coupling_grid(f, config.field(j), config)) for j in f.coupled_fields)
        decoder = heads_width(f, config.heads // 2, grid) + heads_width(f, config.heads - config.heads // 2, grid)
        block = (ACTIVATION_WIDTHS + 2 * config.mlp_ratio) * f.embed_dim
        layers = config.encoder_layers - (0 if f.predicted else 1)
        per_token = layers * (block + encoder) + (config.decoder_layers * (block + decoder) if f.predicted else 0)
        total += f.num_levels * f.tokens_per_level * per_token
    return int(total * batch_size * element_size)


ACTIVATION_WIDTHS = 8


def _available_memory(device: torch.device) -> int:
    """Bytes free for this process: free device memory on CUDA, ``MemAvailable`` of the host otherwise."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def checkpointing_needed(model: Multiformer, batch_size: int, device: torch.device | str) -> bool:
    """``activation_checkpointing`` of ``model``'s config, with ``auto`` resolved for a batch on ``device``.

    The rule: checkpoint when the estimated activations (:func:`activation_bytes`) exceed half of the
    memory left after weights, gradients and the two AdamW moments (16 bytes per trainable parameter).
    Recomputing costs about a third more compute per step (1.4x the step time measured on CPU at
    batch 1), so it is worth it only when memory is short.
    """
    setting = model.config.activation_checkpointing
    if setting != "auto":
        return setting
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    left = _available_memory(torch.device(device)) - 16 * trainable
    return activation_bytes(model.config, batch_size) > 0.5 * left


def compile_model(model: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` of a whole multiformer (or its DDP/FSDP wrapper) for training and inference.

    The gather of the target tokens has a data-dependent size; dynamo traces it (and the tail after it)
    with a symbolic target count instead of breaking the graph, so one graph serves every batch.
    """
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    return torch.compile(model, backend=backend)


# ------------------------------------------------------------------------------ plug-and-play loading
_OLD_SELF_HEAD = re.compile(r"^fields\.([^.]+)\.(encoder\.\d+\.heads\.\1|decoder\.\d+\.heads\.self)\.q\.weight$")


def load_weights(model: Multiformer, state: Mapping[str, torch.Tensor], origin: str | Path) -> None:
    """``model.load_state_dict(state)``; a mismatch is a :class:`CheckpointError` naming ``origin``, which
    says so when the weights are of the layout before fused attention (self heads with separate ``q`` and
    ``kv`` projections), which this version cannot load."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        hint = ("; it was written by an earlier version of the model (self heads with separate q/kv projections, "
                "one bias per 4-D offset), which this version cannot load: retrain it"
                if any(_OLD_SELF_HEAD.match(k) for k in state) else "")
        raise CheckpointError(
            f"{origin}: the weights do not fit the checkpoint's own model config{hint}: {exc}") from None


_COUPLING_HEAD = re.compile(r"^(fields\.[^.]+\.encoder\.\d+\.heads\.([^.]+))\.")


def _model_state(source: Mapping[str, torch.Tensor] | str | Path) -> Mapping[str, torch.Tensor]:
    """The multiformer parameters of a checkpoint file (a trainer's or weights alone, format and checksum
    verified) or of a mapping (a state dict, or a dict with one under ``model``)."""
    where = str(source) if isinstance(source, (str, Path)) else "state dict"
    if isinstance(source, (str, Path)):
        source = load_state(source, [TRAINER_FORMAT, WEIGHTS_FORMAT, FINETUNED_FORMAT], what="checkpoint")
    if not isinstance(source, Mapping):
        raise CheckpointError(f"{where}: holds a {type(source).__name__}, not multiformer weights")
    state = source.get("model", source)
    if not isinstance(state, Mapping) or not any(
            isinstance(k, str) and k.startswith("fields.") and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: holds no multiformer parameters ('fields.<name>.*' tensors)")
    return state


def load_fields(model: Multiformer, source: Mapping[str, torch.Tensor] | str | Path,
                fields: Sequence[str] | None = None, *, freeze: bool = False) -> list[str]:
    """Copy whole fields from a checkpoint (a trainer checkpoint, a model state dict or a path).

    For each field, every parameter under ``fields.<name>.`` must exist in both with the same shape,
    with two exceptions: coupling heads the model has and the checkpoint lacks are new (their output
    projection is zeroed, so the field computes exactly what it did in the checkpoint until they
    learn), and a field that is input-only in ``model`` drops the decoder, tail and last encoder layer
    it may have had. ``freeze=True`` stops gradients for everything loaded (add a field to a trained
    model while the existing ones stay fixed). Returns the loaded parameter names.
    """
    state = _model_state(source)
    available = sorted({k.split(".")[1] for k in state if k.startswith("fields.")})
    names = list(fields) if fields is not None else [n for n in model.fields if n in available]
    own = model.state_dict()
    loaded: list[str] = []
    for name in names:
        if name not in available or name not in model.fields:
            raise CheckpointError(
                f"field {name!r}: not in both the checkpoint (fields {available}) and the model "
                f"(fields {list(model.fields)})"
            )
        prefix = f"fields.{name}."
        ckpt_keys = {k for k in state if k.startswith(prefix)}
        model_keys = {k for k in own if k.startswith(prefix)}
        extra = sorted(ckpt_keys - model_keys)
        if extra and model.config.field(name).predicted:
            raise CheckpointError(
                f"field {name!r}: checkpoint parameters {extra[:3]} have no place in the model; "
                "layer counts, heads or couplings differ from the checkpoint's configuration"
            )
        missing = sorted(model_keys - ckpt_keys)
        new_heads = {m.group(1) for k in missing if (m := _COUPLING_HEAD.match(k)) and m.group(2) != name}
        unexplained = [k for k in missing if not any(k.startswith(f"{head}.") for head in new_heads)]
        if unexplained:
            raise CheckpointError(
                f"field {name!r}: model parameters {unexplained[:3]} are not in the checkpoint; "
                "layer counts or widths differ from the checkpoint's configuration"
            )
        with torch.no_grad():
            for key in sorted(ckpt_keys & model_keys):
                if state[key].shape != own[key].shape:
                    raise CheckpointError(
                        f"{key}: checkpoint shape {list(state[key].shape)} != model shape {list(own[key].shape)}"
                    )
                own[key].copy_(state[key])
                loaded.append(key)
            for head in new_heads:
                own[f"{head}.out.weight"].zero_()
    if freeze:
        params = dict(model.named_parameters())
        for key in loaded:
            if key in params:
                params[key].requires_grad_(False)
    return loaded

