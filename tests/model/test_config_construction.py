"""Configs check themselves when built (``config.Validated``): in Python as from YAML, and through
``dataclasses.replace``; the YAML loader still names the file and the key path."""

from __future__ import annotations

import dataclasses

import pytest

from atmorep_coupler.config import from_dict
from atmorep_coupler.errors import AtmoRepError, ConfigError
from atmorep_coupler.model.config import FieldConfig, ModelConfig, StrategyConfig
from atmorep_coupler.training.config import RunConfig

from .conftest import tiny_config_dict


def test_a_config_built_in_python_is_checked(tiny_config):
    """One member would make the fair CRPS divide by zero (M - 1 = 0): refused at construction."""
    with pytest.raises(AtmoRepError, match=r"ensemble_size: 1 must be >= 2"):
        ModelConfig(fields=tiny_config.fields, ensemble_size=1)
    with pytest.raises(ConfigError, match=r"ensemble_size: 1 must be >= 2"):
        dataclasses.replace(tiny_config, ensemble_size=1)
    with pytest.raises(ConfigError, match="forecast_slices"):
        StrategyConfig("forecast", forecast_slices=0)
    field = tiny_config.fields[0]
    with pytest.raises(ConfigError, match="embed_dim"):
        FieldConfig(name=field.name, token_size=field.token_size, num_tokens=field.num_tokens, embed_dim=12)


def test_the_yaml_loader_keeps_the_key_path():
    with pytest.raises(ConfigError, match=r"^run\.yaml: model: ensemble_size: 1 must be >= 2"):
        from_dict(RunConfig, {"model": tiny_config_dict(ensemble_size=1), "data": {"store": "x.zarr"}},
                  origin="run.yaml")
