"""Multi-resolution fields: a finer field tiles the same neighbourhood with its own token size; the
transformer token embedding without layers is the linear one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.config import from_dict
from atmorep_coupler.data.paired import coarse_grid, fine_origins
from atmorep_coupler.data.tokens import META_FEATURES
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.embedding import PointTransformerEmbedding, equivalent_linear
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.model.multiformer import Multiformer
from atmorep_coupler.regrid import LatLonGrid

from .conftest import tiny_config_dict

FINE = {"name": "temperature_fine", "source": "temperature", "levels": [850, 500], "token_size": [1, 8, 8],
        "num_tokens": [3, 2, 4], "embed_dim": 32, "grid_refinement": 2, "embedding": "transformer",
        "coupled_fields": ["temperature", "u_component_of_wind"]}


def _config(**fine) -> ModelConfig:
    d = tiny_config_dict()
    d["fields"].append({**FINE, **fine})
    return from_dict(ModelConfig, d)


def test_a_finer_field_must_cover_the_same_neighbourhood():
    config = _config()
    fine = config.field("temperature_fine")
    assert fine.neighbourhood == (3, 16, 32) and fine.extent == config.field("temperature").extent == (3, 8, 16)
    with pytest.raises(ConfigError, match=r"temperature_fine.*same space-time neighbourhood"):
        _config(grid_refinement=1)
    with pytest.raises(ConfigError, match="grid_refinement: 3 must be >= 1 and divide"):
        _config(grid_refinement=3)
    d = tiny_config_dict()
    d["fields"].insert(0, FINE)
    with pytest.raises(ConfigError, match="first field defines the model's grid"):
        from_dict(ModelConfig, d)


def _token_bounds(grid: LatLonGrid, row0: int, col0: int, size: tuple[int, int], count: tuple[int, int]):
    """Latitude and (unwrapped) longitude bounds [Y, X, 2, 2] of each token of a window starting at (row0, col0)."""
    lat_edges = 90.0 - 180.0 * np.arange(grid.shape[0] + 1) / grid.shape[0]
    dlon = 360.0 / grid.shape[1]
    out = np.empty((*count, 2, 2))
    for a in range(count[0]):
        rows = row0 + a * size[0] + np.arange(size[0])
        for b in range(count[1]):
            cols = col0 + b * size[1] + np.arange(size[1])
            out[a, b, 0] = lat_edges[rows[-1] + 1], lat_edges[rows[0]]
            out[a, b, 1] = grid.lon[cols[0] % grid.shape[1]] - dlon / 2 + 360.0 * (cols[0] // grid.shape[1]), \
                grid.lon[cols[0] % grid.shape[1]] - dlon / 2 + 360.0 * (cols[0] // grid.shape[1]) + size[1] * dlon
    return out


def test_fine_tokens_tile_the_coarse_tokens_neighbourhood():
    """On the paired grids (5.625° and 2.8125°, both centred on 0°), 8 x 8 fine tokens at the mapped origin cover
    the 4 x 4 coarse tokens' latitude bands exactly, and their longitude spans with the same width, half a fine
    cell (1.40625°) further east: the grids' cells do not nest in longitude."""
    coarse, fine = coarse_grid((32, 64)), LatLonGrid(64, 128, lon0=-180.0 / 128)
    np.testing.assert_allclose(fine.lon, 2.8125 * np.arange(128))
    rng = np.random.default_rng(0)
    origins = np.stack([rng.integers(0, 10, 20), rng.integers(0, 32 - 8 + 1, 20), rng.integers(0, 64, 20)], -1)
    for (t, row, col), (ft, frow, fcol) in zip(origins, fine_origins(origins, 2)):
        assert ft == t
        c = _token_bounds(coarse, row, col, (4, 4), (2, 4))
        f = _token_bounds(fine, frow, fcol, (8, 8), (2, 4))
        np.testing.assert_allclose(f[:, :, 0], c[:, :, 0], atol=1e-12)  # latitude bands: identical
        np.testing.assert_allclose(np.diff(f[:, :, 1]), np.diff(c[:, :, 1]), atol=1e-12)  # same widths
        np.testing.assert_allclose(f[:, :, 1] - c[:, :, 1], 1.40625, atol=1e-12)  # half a fine cell east


def test_a_model_with_a_fine_field_predicts_fine_tokens():
    torch.manual_seed(0)
    config = _config()
    model = Multiformer(config)
    B = 2
    masked, meta = {}, {}
    for f in config.fields:
        x = torch.randn(B, f.num_levels, *f.num_tokens, *f.token_size)
        hidden = torch.full(x.shape[:5], f.name == "temperature_fine")
        masked[f.name] = MaskedField(torch.where(hidden[..., None, None, None], 0.0, x), hidden, hidden, x[hidden])
        meta[f.name] = torch.zeros(*x.shape[:5], len(META_FEATURES))
    out = model(masked, meta)
    n = B * 2 * 3 * 2 * 4
    assert out["temperature_fine"].members.shape == (n, 4, 1, 8, 8)
    assert out["temperature"].members.shape[0] == 0


def test_transformer_embedding_without_layers_is_the_linear_embedding():
    torch.manual_seed(1)
    emb = PointTransformerEmbedding(points=64, dim=32, width=16, layers=0)
    x = torch.randn(5, 7, 64)
    linear = equivalent_linear(emb)
    torch.testing.assert_close(emb(x), linear(x), rtol=0, atol=2e-5)
    # its own map, not any linear one: a layer changes the output by far more than the tolerance
    deep = PointTransformerEmbedding(points=64, dim=32, width=16, layers=1)
    deep.load_state_dict(emb.state_dict(), strict=False)
    assert (deep(x) - linear(x)).abs().max() > 1e-2


def test_field_embedding_is_linear_by_default_and_a_transformer_when_configured():
    config = _config()
    model = Multiformer(config)
    assert isinstance(model.fields["temperature"].embedding.token, torch.nn.Linear)
    token = model.fields["temperature_fine"].embedding.token
    assert isinstance(token, PointTransformerEmbedding) and len(token.layers) == 1 and token.points == 64
    assert FieldConfig.__dataclass_fields__["embedding"].default == "linear"
