"""The AtmoRep multiformer: configuration, masking strategies, model, ensemble tail, losses, metrics.

``config`` (typed field and model configs) -> ``masking`` (what the model sees and must predict) ->
``multiformer`` (embedding, per-field encoder with cross-field coupling, decoder, plug-and-play
loading) -> ``tail`` (ensemble) -> ``losses`` / ``metrics``.
"""

from __future__ import annotations

from atmorep_coupler.model.config import FieldConfig, MaskingRates, ModelConfig, StrategyConfig
from atmorep_coupler.model.masking import MaskedField, Masker
from atmorep_coupler.model.multiformer import Multiformer, load_fields
from atmorep_coupler.model.tail import EnsembleOutput

__all__ = [
    "EnsembleOutput",
    "FieldConfig",
    "MaskedField",
    "Masker",
    "MaskingRates",
    "ModelConfig",
    "Multiformer",
    "StrategyConfig",
    "load_fields",
]
