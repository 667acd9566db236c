"""Typed, validated configuration of the multiformer.

Built with :func:`atmorep_coupler.config.from_dict` / ``load_yaml``: unknown keys, missing keys and
wrong types are errors naming the key path (``model.fields[2].token_size``). ``validate`` adds the
cross-field checks the reference code never made: every field spans the same space-time
neighbourhood, coupled fields exist, token sizes fit the coarsening factors and the masking
strategies fit the token grid.

A field is a stack of ``levels`` of one store variable, cut into ``num_tokens = [T, Y, X]`` tokens of
``token_size = [t, y, x]`` grid points (time steps, latitude rows, longitude columns). Fields with no
``levels`` are surface fields (``[time, lat, lon]``) or global time series (``[time]``, e.g.
``co2_equivalent``), both read as one "level". Input-only fields (``predicted: false``) are the
conditioning and forcing fields: they are never masked, have no decoder or tail and enter the
model only through the embedding and the cross-field attention of the fields that couple to them.
"""

from __future__ import annotations

import math
import re

from dataclasses import dataclass, field
from typing import Literal

from atmorep_coupler.config import Validated
from atmorep_coupler.errors import ConfigError

__all__ = ["MaskingRates", "StrategyConfig", "FieldConfig", "ModelConfig", "StrategyKind"]

StrategyKind = Literal["BERT", "forecast", "temporal_interpolation", "spatial_interpolation", "identity"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def identifier_for(variable: str) -> str:
    """A field name for a store variable that is not an identifier: its ERA5 short name where it has
    one (``2m_temperature`` -> ``t2m``), else the variable with other characters replaced and a
    leading digit moved behind (``10m_wind-speed`` -> ``m_wind_speed_10``)."""
    from atmorep_coupler.data.store import ALIASES

    short = [alias for alias, name in ALIASES.items() if name == variable and _NAME.match(alias)]
    if short:
        return short[0]
    cleaned = re.sub(r"\W", "_", variable)
    digits = re.match(r"^\d+", cleaned)
    return f"{cleaned[digits.end():].lstrip('_')}_{digits[0]}" if digits else cleaned


@dataclass(frozen=True)
class MaskingRates(Validated):
    """BERT rates of one field: ``total`` bounds the fraction of tokens selected per sample and level
    (drawn from ``U(0, total)``); each selected token is independently hidden (``mask``), noised
    (``noise``) and coarsened (``coarsen``) with these probabilities."""

    total: float = 0.5
    """Upper bound of the fraction of a level's tokens selected per sample (the fraction is drawn from U(0,
    total))."""
    mask: float = 0.9
    """Probability that a selected token is hidden (replaced by the learned mask embedding)."""
    noise: float = 0.2
    """Probability that a selected token is noised: x <- (1 - w) x + w eps, w ~ U(0, 1), eps ~ N(0, 1)."""
    coarsen: float = 0.05
    """Probability that a selected token is coarsened: block-averaged by a factor of ``coarsen_factors`` and
    expanded back."""

    def validate(self) -> None:
        for name in ("total", "mask", "noise", "coarsen"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}: {value} is not a probability in [0, 1]")


@dataclass(frozen=True)
class StrategyConfig(Validated):
    """One masking strategy. With several strategies, each batch draws one with probability
    proportional to ``weight`` (e.g. BERT for representation learning mixed with forecast)."""

    kind: StrategyKind
    """What is hidden and predicted: random tokens (BERT), the last time slices, given slices, a block of
    tokens, or nothing."""
    weight: float = 1.0
    """Relative probability of this strategy when several are mixed (one strategy per batch)."""
    forecast_slices: int = 1
    """forecast: the number of last token time slices that are hidden and predicted."""
    interpolation_slices: tuple[int, ...] = ()
    """temporal_interpolation: indices of the hidden token time slices; empty means the middle one, T // 2."""
    region: tuple[int, int] = (1, 1)
    """spatial_interpolation: size [Y', X'] in tokens of the hidden block (at a random place, all times and
    levels)."""
    context_noise: float = 0.0
    """forecast: the largest standard deviation, in normalized units, of the noise put on the visible time
    slices of predicted fields. Each sample and level draws sigma ~ U(0, context_noise) and every visible token
    is shifted by sigma * eps, eps ~ N(0, 1) constant over the token's points: a token-scale error like the one
    an autoregressive rollout feeds back into its own context, so the network learns to weigh that context
    against the conditioning (the coarse model's state) instead of trusting it alone. 0 keeps the context
    clean; the targets stay clean either way."""

    def validate(self) -> None:
        if self.weight <= 0:
            raise ConfigError(f"weight: {self.weight} must be > 0")
        if self.forecast_slices < 1:
            raise ConfigError(f"forecast_slices: {self.forecast_slices} must be >= 1")
        if self.context_noise < 0:
            raise ConfigError(f"context_noise: {self.context_noise} must be >= 0")
        if self.context_noise and self.kind != "forecast":
            raise ConfigError(f"context_noise: only the forecast strategy has a context to noise, not {self.kind}")
        if min(self.region) < 1:
            raise ConfigError(f"region: {list(self.region)} must be >= 1 token in each direction")


@dataclass(frozen=True)
class FieldConfig(Validated):
    """One field of the multiformer (see the module docstring)."""

    name: str
    """Field name (an identifier); also the store variable unless ``source`` is given, and the component's item
    name."""
    token_size: tuple[int, int, int]
    """Points per token [t, y, x]: time steps, latitude rows, longitude columns."""
    num_tokens: tuple[int, int, int]
    """Tokens per level [T, Y, X]; num_tokens x token_size is the neighbourhood, the same for every field."""
    embed_dim: int
    """Width of this field's transformer (a multiple of 8, divisible by ``heads`` into an even head size)."""
    levels: tuple[float, ...] = ()
    """Pressure levels in hPa; empty for surface fields and global time series (one level)."""
    coupled_fields: tuple[str, ...] = ()
    """Fields this one cross-attends to (keys and values); input-only fields act only through these."""
    masking: MaskingRates = field(default_factory=MaskingRates)
    """BERT masking rates of this field."""
    normalization: Literal["global", "local"] = "global"
    """Statistics used to normalize: one mean/std per level and month (global) or per grid point (local)."""
    loss_weight: float = 1.0
    """Weight of this field in the total loss (predicted fields)."""
    predicted: bool = True
    """false makes the field input-only (conditioning, forcing): never masked, no decoder or tail."""
    source: str | None = None
    """Store variable (or alias) to read; default ``name``."""
    transform: str | None = None
    """A reader registered with ``data.sampler.register_transform`` (or ``family:argument``, e.g.
    ``coarse:T15``) that replaces the plain store read."""
    grid_refinement: int = 1
    """How many times finer than the model's grid (the first field's) this field's grid is in latitude and
    longitude; ``token_size`` counts points of the field's own grid, so ``[1, 8, 8]`` at 2 covers the cube of
    ``[1, 4, 4]`` at 1 (multi-resolution fields, e.g. a downscaled output)."""
    embedding: Literal["linear", "transformer"] = "linear"
    """Embedding of a token's points: one linear map, or a small transformer over the points (each point a
    sequence element with a learned position) followed by a linear map of the result; fine tokens have many
    points, and attending among them is cheaper than a wider linear map to learn their structure."""
    embedding_layers: int = 1
    """transformer embedding: layers over the points (0: an affine map of the points, like the linear one)."""
    embedding_width: int = 16
    """transformer embedding: width per point (a multiple of 4: 4 heads)."""

    @property
    def num_levels(self) -> int:
        return max(len(self.levels), 1)

    @property
    def variable(self) -> str:
        """The store variable this field reads."""
        return self.source or self.name

    @property
    def neighbourhood(self) -> tuple[int, int, int]:
        """Extent ``num_tokens * token_size`` in grid points (time steps, rows, columns)."""
        return tuple(n * s for n, s in zip(self.num_tokens, self.token_size))

    @property
    def extent(self) -> tuple[int, int, int]:
        """The neighbourhood in points of the model's grid: what must agree between fields."""
        t, y, x = self.neighbourhood
        return t, y // self.grid_refinement, x // self.grid_refinement

    @property
    def token_points(self) -> int:
        return math.prod(self.token_size)

    @property
    def tokens_per_level(self) -> int:
        return math.prod(self.num_tokens)

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"name: {self.name!r} must be an identifier (letters, digits, '_'; not starting with a digit), "
                f"because it names the field's exchange item and Python attributes; read a store variable of "
                f"that name through 'source', e.g. name: {identifier_for(self.source or self.name)}, "
                f"source: {self.source or self.name}"
            )
        if min(self.token_size) < 1 or min(self.num_tokens) < 1:
            raise ConfigError(
                f"token_size {list(self.token_size)} and num_tokens {list(self.num_tokens)} must be >= 1"
            )
        if self.num_levels * self.tokens_per_level < 2:
            raise ConfigError(
                f"num_tokens: {list(self.num_tokens)} gives one token; attention over a single token "
                "ignores its queries and keys, so split the neighbourhood (e.g. one token per time slice)"
            )
        if self.embed_dim < 8 or self.embed_dim % 8:
            raise ConfigError(
                f"embed_dim: {self.embed_dim} must be a positive multiple of 8 "
                "(the positional encoding gives each of level, time, lat, lon sin/cos pairs)"
            )
        if len(set(self.levels)) != len(self.levels) or any(p <= 0 for p in self.levels):
            raise ConfigError(f"levels: {list(self.levels)} must be distinct pressures > 0 hPa")
        if self.name in self.coupled_fields or len(set(self.coupled_fields)) != len(self.coupled_fields):
            raise ConfigError(
                f"coupled_fields: {list(self.coupled_fields)} must not repeat a field or name the field itself"
            )
        if self.predicted and self.loss_weight <= 0:
            raise ConfigError(f"loss_weight: {self.loss_weight} must be > 0 for a predicted field")
        r = self.grid_refinement
        if r < 1 or self.token_size[1] % r or self.token_size[2] % r:
            raise ConfigError(
                f"grid_refinement: {r} must be >= 1 and divide the token's {self.token_size[1]}x{self.token_size[2]} "
                f"points (a token must cover whole cells of the model's grid)"
            )
        if self.embedding_layers < 0 or self.embedding_width < 4 or self.embedding_width % 4:
            raise ConfigError(
                f"embedding_layers: {self.embedding_layers} must be >= 0 and embedding_width: {self.embedding_width} "
                "a positive multiple of 4"
            )


@dataclass(frozen=True)
class ModelConfig(Validated):
    """The multiformer: fields plus the hyper-parameters shared by all of them."""

    fields: tuple[FieldConfig, ...]
    """The fields, each with its own transformer; at least one predicted."""
    encoder_layers: int = 2
    """Encoder layers (self-attention within a field, cross-attention to coupled fields, MLP)."""
    decoder_layers: int = 2
    """Decoder layers per predicted field (at most ``encoder_layers``; U-Net order)."""
    heads: int = 4
    """Self-attention heads per field."""
    coupling_heads: int = 1
    """Cross-attention heads per coupled field in each encoder layer."""
    mlp_ratio: float = 2.0
    """Hidden width of the MLPs as a multiple of the field's ``embed_dim``."""
    dropout: float = 0.0
    """Dropout probability on the two residual branches (attention, MLP) of every layer."""
    ensemble_size: int = 8
    """Members of the ensemble tail (at least 2)."""
    tail_hidden_layers: int = 0
    """Hidden layers of each ensemble-tail head (0: one linear map per member)."""
    qk_norm: bool = True
    """Normalize queries and keys: one switch for self, coupling and decoder heads."""
    relative_position_bias: bool = True
    """Learned per-head relative position biases within a field: a sum of per-axis offset tables (level, time, row,
    column) with a locality prior, computed on the fused attention kernels."""
    position_bias_groups: tuple[int, ...] = (1, 1, 1, 1)
    """How the token axes (level, time, row, column), in this order, group into jointly learned offset tables of the
    relative position bias: ``[1, 1, 1, 1]`` every axis alone, ``[1, 3]`` level alone and time-row-column offsets
    jointly (advection-like offsets), ``[4]`` one value per 4-D offset. A group adds the product of its axes' token
    counts to every head's size in attention, so coarse groupings cost attention time."""
    coupling_position_bias: bool = False
    """The same biases on coupling heads between fields on the same token grid (e.g. a field and its
    coarse-model conditioning): a locality prior that lets a field read the coupled field's token at the same
    place and time from the first step on."""
    activation_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute each layer's activations in the backward pass instead of keeping them: less memory, about a third
    more compute. ``auto``: on where the estimated activations of a training batch exceed half the memory left
    after weights, gradients and AdamW state (GPU: free device memory; CPU: available host memory), else off."""
    coarsen_factors: tuple[int, ...] = (2,)
    """Block sizes k (>= 2, dividing the token's y and x) that BERT coarsening draws from: block-average by k,
    then expand back."""
    strategies: tuple[StrategyConfig, ...] = (StrategyConfig("BERT"),)
    """Masking strategies, mixed by ``weight``."""

    def field(self, name: str) -> FieldConfig:
        for f in self.fields:
            if f.name == name:
                return f
        raise ConfigError(f"no field {name!r} in the model (fields: {[f.name for f in self.fields]})")

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def predicted_fields(self) -> list[FieldConfig]:
        return [f for f in self.fields if f.predicted]

    @property
    def neighbourhood(self) -> tuple[int, int, int]:
        return self.fields[0].neighbourhood

    def validate(self) -> None:
        if not self.fields:
            raise ConfigError("fields: at least one field is required")
        names = self.field_names
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"fields[{i}].name: {name!r} appears twice")
        if not self.predicted_fields:
            raise ConfigError("fields: at least one field must have predicted: true")
        ref = self.fields[0]
        if ref.grid_refinement != 1:
            raise ConfigError(
                f"fields[0] ({ref.name}).grid_refinement: {ref.grid_refinement}; the first field defines the model's "
                "grid, so it must be 1 (list a finer field after it)"
            )
        for i, f in enumerate(self.fields):
            where = f"fields[{i}] ({f.name})"
            if f.extent != ref.extent:
                raise ConfigError(
                    f"{where}: num_tokens x token_size / grid_refinement = {list(f.extent)} grid points, but "
                    f"{ref.name} spans {list(ref.extent)}; every field must cover the same "
                    "space-time neighbourhood"
                )
            for source in f.coupled_fields:
                if source not in names:
                    raise ConfigError(f"{where}.coupled_fields: {source!r} is not a field of the model")
            if not f.predicted and not any(f.name in g.coupled_fields for g in self.fields):
                raise ConfigError(
                    f"{where}: input-only field is in no field's coupled_fields, so it would have no "
                    "effect; couple a predicted field to it or remove it"
                )
            if f.embed_dim % self.heads or (f.embed_dim // self.heads) % 2:
                raise ConfigError(
                    f"{where}.embed_dim: {f.embed_dim} must be divisible by heads={self.heads} "
                    "into an even head dimension"
                )
            if f.predicted and f.masking.coarsen > 0:
                bad = [k for k in self.coarsen_factors if f.token_size[1] % k or f.token_size[2] % k]
                if bad:
                    raise ConfigError(
                        f"{where}.token_size: coarsen_factors {bad} do not divide the token's "
                        f"{f.token_size[1]}x{f.token_size[2]} points; change coarsen_factors or set "
                        "masking.coarsen: 0 for this field"
                    )
        positive = {
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "heads": self.heads,
            "coupling_heads": self.coupling_heads,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}: {value} must be >= 1")
        if self.decoder_layers > self.encoder_layers:
            raise ConfigError(
                f"decoder_layers: {self.decoder_layers} > encoder_layers {self.encoder_layers}; decoder "
                "layer k attends to encoder layer (encoder_layers - 1 - k)"
            )
        if self.ensemble_size < 2:
            raise ConfigError(f"ensemble_size: {self.ensemble_size} must be >= 2 (spread needs two members)")
        if self.mlp_ratio <= 0 or not 0 <= self.dropout < 1 or self.tail_hidden_layers < 0:
            raise ConfigError("mlp_ratio must be > 0, dropout in [0, 1), tail_hidden_layers >= 0")
        if sum(self.position_bias_groups) != 4 or min(self.position_bias_groups, default=0) < 1:
            raise ConfigError(
                f"position_bias_groups: {list(self.position_bias_groups)} must be group sizes >= 1 adding up to the 4 "
                "token axes (level, time, row, column), e.g. [1, 1, 1, 1] or [1, 3]"
            )
        if not self.coarsen_factors or min(self.coarsen_factors) < 2:
            raise ConfigError(f"coarsen_factors: {list(self.coarsen_factors)} must be integers >= 2")
        if not self.strategies:
            raise ConfigError("strategies: at least one masking strategy is required")
        predicted = self.predicted_fields
        for i, s in enumerate(self.strategies):
            self._validate_strategy(f"strategies[{i}]", s, predicted)

    @staticmethod
    def _validate_strategy(where: str, s: StrategyConfig, predicted: list[FieldConfig]) -> None:
        """Strategies count in token slices/blocks; all predicted fields must then hide the same span."""
        if s.kind in ("forecast", "temporal_interpolation") and len({f.token_size[0] for f in predicted}) > 1:
            raise ConfigError(
                f"{where}: {s.kind} hides whole time slices, so every predicted field needs the same "
                f"token time size (got {[f.token_size[0] for f in predicted]})"
            )
        if s.kind == "spatial_interpolation" and len({f.num_tokens[1:] for f in predicted}) > 1:
            raise ConfigError(
                f"{where}: spatial_interpolation hides a block of tokens, so every predicted field needs "
                f"the same [Y, X] token grid (got {[list(f.num_tokens[1:]) for f in predicted]})"
            )
        T, Y, X = predicted[0].num_tokens
        if s.kind == "forecast" and s.forecast_slices >= T:
            raise ConfigError(
                f"{where}.forecast_slices: {s.forecast_slices} must be < the {T} time slices of a "
                "neighbourhood (the model needs at least one visible slice)"
            )
        if s.kind == "temporal_interpolation" and any(not 0 <= k < T for k in s.interpolation_slices):
            raise ConfigError(f"{where}.interpolation_slices: {list(s.interpolation_slices)} not in [0, {T})")
        if s.kind == "spatial_interpolation" and (s.region[0] > Y or s.region[1] > X):
            raise ConfigError(f"{where}.region: {list(s.region)} exceeds the {Y}x{X} token grid")
