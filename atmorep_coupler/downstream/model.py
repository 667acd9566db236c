"""A pretrained multiformer plus one fine-resolution output field: the downscaling model.

The new field reads the pretrained fields through its own coupling heads (cross-attention), has its own
embedding, encoder, decoder and ensemble tail, and lives on a grid ``refinement`` times finer with tokens
of ``refinement``² times the points covering the same cube (``FieldConfig.grid_refinement``). The
pretrained fields do not read it, so their predictions are those of the checkpoint; with ``freeze`` their
parameters get no gradient. Its target is the departure of the fine truth from bilinear interpolation of
the coarse field, in units of that departure's training-period standard deviation per level
(:mod:`.pairs`): the tail adds what interpolation misses, and a zero output is the bilinear baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import FieldConfig, MaskingRates, ModelConfig
from atmorep_coupler.model.multiformer import Multiformer, load_fields

__all__ = ["DownscalingConfig", "downscaling_model", "downscaling_model_config", "fine_name"]


@dataclass(frozen=True)
class DownscalingConfig:
    """What the fine field is and how it is fine-tuned."""

    variable: str = "temperature"
    """Store variable downscaled (read from the fine store; the coarse store holds its coarsening)."""
    levels: tuple[float, ...] = (500.0, 850.0)
    """Pressure levels of the fine field, hPa."""
    refinement: int = 2
    """How many times finer the fine grid is than the model's, in latitude and longitude."""
    embed_dim: int = 32
    """Width of the fine field's transformer."""
    embedding: Literal["linear", "transformer"] = "transformer"
    """Token embedding of the fine field (``FieldConfig.embedding``)."""
    embedding_layers: int = 1
    """Point-transformer layers of a transformer embedding."""
    coupled_fields: tuple[str, ...] = ()
    """Pretrained fields the fine field attends to; empty: every pretrained predicted field."""
    freeze: bool = True
    """Freeze the pretrained network: only the fine field's parameters train."""
    losses: Mapping[str, float] = field(default_factory=lambda: {"crps_ensemble": 1.0, "stats": 1.0})
    """Losses of the fine field's ensemble (``model.losses.LOSSES``) and their weights."""
    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 8
    """Neighbourhoods per step."""
    lr: float = 1e-3
    """AdamW learning rate (constant)."""
    held_out_days: float = 10.0
    """The record's last days: never trained on, scored by :mod:`.evaluate`."""
    seed: int = 0
    """Seed of the new field's initial weights and of the sampler."""

    def validate(self) -> None:
        if self.refinement < 2:
            raise ConfigError(f"downscaling.refinement: {self.refinement} must be >= 2 (a finer grid)")
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.held_out_days <= 0:
            raise ConfigError("downscaling: steps >= 0, batch_size >= 1, lr > 0 and held_out_days > 0 are required")


def fine_name(variable: str) -> str:
    """The fine field's name: ``<variable>_fine``."""
    return f"{variable}_fine"


def downscaling_model_config(base: ModelConfig, config: DownscalingConfig) -> ModelConfig:
    """``base`` with the fine field appended: the token grid of ``base``'s first predicted field, tokens
    ``refinement`` times larger in latitude and longitude, coupled to the pretrained fields."""
    config.validate()
    ref = base.predicted_fields[0]
    coupled = config.coupled_fields or tuple(f.name for f in base.predicted_fields)
    missing = [name for name in coupled if name not in base.field_names]
    if missing:
        raise ConfigError(f"downscaling.coupled_fields: {missing} are not fields of the pretrained model {base.field_names}")
    t, y, x = ref.token_size
    r = config.refinement
    fine = FieldConfig(
        name=fine_name(config.variable), source=config.variable, levels=tuple(config.levels),
        token_size=(t, r * y, r * x), num_tokens=ref.num_tokens, embed_dim=config.embed_dim,
        coupled_fields=tuple(coupled), masking=MaskingRates(coarsen=0.0), grid_refinement=r,
        embedding=config.embedding, embedding_layers=config.embedding_layers,
    )
    if fine.name in base.field_names:
        raise ConfigError(f"the pretrained model already has a field {fine.name!r}")
    out = dataclasses.replace(base, fields=(*base.fields, fine))
    out.validate()
    return out


def downscaling_model(base: ModelConfig, weights: Mapping[str, torch.Tensor], config: DownscalingConfig) -> Multiformer:
    """The downscaling model: the pretrained fields loaded from ``weights`` (frozen with ``config.freeze``),
    the fine field freshly initialised from ``config.seed``."""
    torch.manual_seed(config.seed)
    model = Multiformer(downscaling_model_config(base, config))
    load_fields(model, weights, list(base.field_names), freeze=config.freeze)
    return model
