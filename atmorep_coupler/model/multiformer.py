"""The AtmoRep multiformer, top to bottom: embedding, encoder, decoder, tail, plug-and-play loading.

One transformer per field; tokens are space-time cubes of one level (``data.tokens``). Per field:

1. **Embedding** ``[B, L, T, Y, X, t, y, x] -> [B, S, E]`` with ``S = L*T*Y*X``: a linear map of the
   token's points; hidden tokens get a learned mask embedding instead (see ``masking``); plus a
   linear map of the token metadata (time, place, level; ``data.tokens``) and a fixed sinusoidal
   encoding of the token's (level, time, row, column) index inside the neighbourhood, each axis on its
   own channels (correct for any ``Y != X``; the reference divided the flat index by ``Y``, D3).
2. **Encoder**: per layer, every field attends with ``heads`` self heads over all its own tokens
   (all levels) and ``coupling_heads`` heads per coupled field (queries from the field, keys and values
   from the other field's layer input, which may have another token count and width). Every field
   reads the *previous* layer's outputs of the others, so the result does not depend on field order.
   Heads over a field's own token grid add a learned relative position bias with a locality prior
   (``RelativePositionBias``); with ``coupling_position_bias`` so do coupling heads between fields on
   the same token grid (a field and its coarse-model conditioning). Pre-norm residual blocks with a
   standard MLP (no GELU after the last linear, D19); one qk-norm switch for every head (D18);
   ``scaled_dot_product_attention`` picks its own backend (D20).
3. **Decoder** (predicted fields): ``decoder_layers`` blocks of self heads plus cross heads to the
   encoder, layer k attending to encoder layer ``encoder_layers - 1 - k`` (deepest first, as in
   AtmoRep); no cross-field coupling.
4. **Tail**: the decoder outputs of the *target* tokens go to the ensemble tail (``tail``).

Input-only fields (conditioning, forcing) have ``encoder_layers - 1`` layers: their last layer's
output would never be read (coupling heads read layer inputs), and dead parameters confuse optimisers
and tests alike.

Each attention sublayer is a sum over its *sources* of per-source heads (``AttentionHeads``), each with
its own output projection. That equals one projection of the concatenated heads, but lets a field gain a
coupling later: :func:`load_fields` zero-initialises the output of coupling heads missing from the
checkpoint, so a field loaded from a single-field checkpoint computes exactly what it computed before,
and the new heads learn from there (plug-and-play, section 7 of the reference notes).
"""

from __future__ import annotations

import functools

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from torch import nn
from torch.utils.checkpoint import checkpoint

from atmorep_coupler.checkpoint import TRAINER_FORMAT, WEIGHTS_FORMAT, load_state
from atmorep_coupler.data.tokens import META_FEATURES
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.model.tail import EnsembleOutput, EnsembleTail

__all__ = ["Multiformer", "positional_encoding", "load_fields"]

AttentionRecord = dict[str, torch.Tensor]


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
        self.token = nn.Linear(field.token_points, E)
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
@functools.lru_cache(maxsize=16)
def _relative_offsets(grid: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[S, S]`` index of the offset (Δlevel, Δtime, Δrow, Δcolumn) between the tokens of ``grid``
    (query minus key), and the ``[n_offsets]`` L1 length of each offset in tokens."""
    sizes = [2 * n - 1 for n in grid]
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")).flatten(1)  # [4, S]
    rel = coords[:, :, None] - coords[:, None, :] + torch.tensor(grid)[:, None, None] - 1  # >= 0
    index = rel[0]
    for axis in range(1, len(grid)):
        index = index * sizes[axis] + rel[axis]
    offsets = torch.stack(torch.meshgrid(*(torch.arange(n) - (n // 2) for n in sizes), indexing="ij")).flatten(1)
    return index, offsets.abs().sum(0).float()


@functools.lru_cache(maxsize=16)
def _offset_index(grid: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return _relative_offsets(grid)[0].to(device)


class RelativePositionBias(nn.Module):
    """Learned logit bias ``b_h(Δlevel, Δtime, Δrow, Δcolumn)`` for heads over one field's token grid.

    Relative position biases (Shaw et al. 2018; T5, Raffel et al. 2020; Swin, Liu et al. 2021),
    initialised with an ALiBi-style locality prior (Press et al. 2022): ``b_h = -m_h |Δ|_1`` with
    slopes ``m_h = 2^-h`` (head 0 local, later heads nearly global). Atmospheric fields decorrelate with
    distance in space and time, so attending to neighbours first is the right prior; with zero
    initialisation (or absolute encodings only) a masked-forecast model stayed at climatology for
    hundreds of steps, because Adam moves a logit by only ~lr per step.
    """

    def __init__(self, grid: tuple[int, int, int, int], heads: int):
        super().__init__()
        self.grid = tuple(grid)
        _, distance = _relative_offsets(self.grid)
        slopes = 2.0 ** -torch.arange(heads, dtype=torch.float32)
        self.table = nn.Parameter(-slopes[:, None] * distance[None, :])

    def forward(self) -> torch.Tensor:
        return self.table[:, _offset_index(self.grid, self.table.device)]  # [heads, S, S]


class AttentionHeads(nn.Module):
    """``heads`` attention heads with queries from ``x`` and keys/values from ``source``.

    Self-attention is the case ``source is x``. Queries and keys are LayerNormed per head when
    ``qk_norm`` (one switch for all heads). Heads whose queries and keys lie on the same token grid
    (``grid``: self heads, decoder heads) add a :class:`RelativePositionBias`. The output is projected
    back to ``x``'s width.
    """

    def __init__(self, dim: int, source_dim: int, heads: int, head_dim: int, qk_norm: bool,
                 grid: tuple[int, int, int, int] | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(dim, heads * head_dim, bias=False)
        self.kv = nn.Linear(source_dim, 2 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.bias = RelativePositionBias(grid, heads) if grid is not None else None

    def forward(self, x: torch.Tensor, source: torch.Tensor, record: AttentionRecord | None = None,
                key: str = "") -> torch.Tensor:
        B, S, _ = x.shape
        q = self.q(x).view(B, S, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(source).view(B, source.shape[1], 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = self.bias().to(q.dtype) if self.bias is not None else None
        if record is None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:  # explicit softmax so that the map can be kept for interpretation
            logits = q @ k.transpose(-1, -2) * self.head_dim**-0.5
            weights = torch.softmax(logits if bias is None else logits + bias, dim=-1)
            record[key] = weights.detach()
            o = weights @ v
        return self.out(o.transpose(1, 2).reshape(B, S, self.heads * self.head_dim))


class MLP(nn.Module):
    """Pre-norm MLP block ``x + W2 Dropout(GELU(W1 LN(x)))``."""

    def __init__(self, dim: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(round(dim * ratio))
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(self.norm(x))))))


def _grid(field: FieldConfig, config: ModelConfig) -> tuple[int, int, int, int] | None:
    """The field's token grid (levels, T, Y, X) for relative position biases, if configured."""
    return (field.num_levels, *field.num_tokens) if config.relative_position_bias else None


def _coupling_grid(field: FieldConfig, source: FieldConfig, config: ModelConfig) -> tuple[int, ...] | None:
    """The shared token grid of a coupling head's queries and keys, if it gets a position bias."""
    grid = _grid(field, config)
    return grid if config.coupling_position_bias and grid == _grid(source, config) else None


# ---------------------------------------------------------------------------------------- encoder
class EncoderLayer(nn.Module):
    """Self heads over the field's tokens plus coupling heads to each coupled field, then the MLP."""

    def __init__(self, field: FieldConfig, widths: Mapping[str, int], config: ModelConfig):
        super().__init__()
        E, head_dim = field.embed_dim, field.embed_dim // config.heads
        grid = _grid(field, config)
        self.name = field.name
        self.norm = nn.LayerNorm(E)
        self.heads = nn.ModuleDict({field.name: AttentionHeads(E, E, config.heads, head_dim, config.qk_norm, grid)})
        for source in field.coupled_fields:
            self.heads[source] = AttentionHeads(E, widths[source], config.coupling_heads, head_dim, config.qk_norm,
                                                _coupling_grid(field, config.field(source), config))
        self.dropout = nn.Dropout(config.dropout)
        self.mlp = MLP(E, config.mlp_ratio, config.dropout)

    def forward(self, x: torch.Tensor, sources: Mapping[str, torch.Tensor], record: AttentionRecord | None = None,
                key: str = "") -> torch.Tensor:
        """``sources[j]``: the (non-affine LayerNormed) layer input of each coupled field ``j``."""
        h = self.norm(x)
        attended = sum(
            heads(h, h if name == self.name else sources[name], record, f"{key}{self.name}<-{name}")
            for name, heads in self.heads.items()
        )
        return self.mlp(x + self.dropout(attended))


# ---------------------------------------------------------------------------------------- decoder
class DecoderLayer(nn.Module):
    """Self heads plus cross heads to one encoder layer's output, then the MLP."""

    def __init__(self, field: FieldConfig, config: ModelConfig):
        super().__init__()
        E, head_dim = field.embed_dim, field.embed_dim // config.heads
        self_heads = config.heads // 2
        grid = _grid(field, config)
        self.norm = nn.LayerNorm(E)
        self.memory_norm = nn.LayerNorm(E)
        self.heads = nn.ModuleDict()
        if self_heads:
            self.heads["self"] = AttentionHeads(E, E, self_heads, head_dim, config.qk_norm, grid)
        self.heads["encoder"] = AttentionHeads(E, E, config.heads - self_heads, head_dim, config.qk_norm, grid)
        self.dropout = nn.Dropout(config.dropout)
        self.mlp = MLP(E, config.mlp_ratio, config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, record: AttentionRecord | None = None,
                key: str = "") -> torch.Tensor:
        h = self.norm(x)
        sources = {"self": h, "encoder": self.memory_norm(memory)}
        attended = sum(heads(h, sources[name], record, f"{key}<-{name}") for name, heads in self.heads.items())
        return self.mlp(x + self.dropout(attended))


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
    """Forward: masked tokens and metadata of every field -> ensemble predictions of the targets."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = {f.name: f.embed_dim for f in config.fields}
        self.fields = nn.ModuleDict({f.name: FieldModule(f, widths, config) for f in config.fields})
        self._coupled = {f.name for g in config.fields for f in config.fields if f.name in g.coupled_fields}

    def forward(self, masked: Mapping[str, MaskedField], meta: Mapping[str, torch.Tensor],
                record: AttentionRecord | None = None) -> dict[str, EnsembleOutput]:
        config = self.config
        x = {name: self.fields[name].embedding(m.inputs, m.hidden, meta[name]) for name, m in masked.items()}
        skips: dict[str, list[torch.Tensor]] = {f.name: [] for f in config.predicted_fields}
        for layer in range(config.encoder_layers):
            sources = {j: F.layer_norm(x[j], x[j].shape[-1:]) for j in self._coupled}
            x = {
                name: self._run(self.fields[name].encoder[layer], x[name], sources, record, f"encoder.{layer}.")
                for name in x
                if layer < len(self.fields[name].encoder)
            }
            for name in skips:
                skips[name].append(x[name])
        out = {}
        for name, enc in skips.items():
            field = self.fields[name]
            y = enc[-1]
            for k, layer in enumerate(field.decoder):
                y = self._run(layer, y, enc[-1 - k], record, f"decoder.{k}.{name}")
            out[name] = field.tail(y[masked[name].target.flatten(1)])
        return out

    def _run(self, layer: nn.Module, x: torch.Tensor, other, record: AttentionRecord | None,
             key: str) -> torch.Tensor:
        """One layer, under activation checkpointing when configured (training only)."""
        if self.config.activation_checkpointing and self.training and record is None and torch.is_grad_enabled():
            return checkpoint(layer, x, other, None, key, use_reentrant=False)
        return layer(x, other, record, key)

    @torch.no_grad()
    def attention_maps(self, masked: Mapping[str, MaskedField], meta: Mapping[str, torch.Tensor]) -> AttentionRecord:
        """Attention weights ``[B, heads, S_query, S_key]`` of every head group, keyed like
        ``encoder.0.temperature<-u_component_of_wind`` (coupling), ``encoder.0.t<-t`` (self) and
        ``decoder.1.t<-encoder``."""
        record: AttentionRecord = {}
        self.forward(masked, meta, record)
        return record


# ------------------------------------------------------------------------------ plug-and-play loading
def _model_state(source: Mapping[str, torch.Tensor] | str | Path) -> Mapping[str, torch.Tensor]:
    """The multiformer parameters of a checkpoint file (a trainer's or weights alone, format and checksum
    verified) or of a mapping (a state dict, or a dict with one under ``model``)."""
    where = str(source) if isinstance(source, (str, Path)) else "state dict"
    if isinstance(source, (str, Path)):
        source = load_state(source, [TRAINER_FORMAT, WEIGHTS_FORMAT], what="checkpoint")
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
        new_heads = {k.rsplit(".", 2)[0] for k in missing if ".encoder." in k and ".heads." in k}
        unexplained = [k for k in missing if k.rsplit(".", 2)[0] not in new_heads]
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

