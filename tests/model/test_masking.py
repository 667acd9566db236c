"""Masking strategies: invariants of inputs, hidden flags, targets; real coarsening; determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atmorep_coupler.config import from_dict
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import ModelConfig, StrategyConfig
from atmorep_coupler.model.masking import Masker, coarsen_tokens

from .conftest import tiny_config_dict


def clean_tokens(config: ModelConfig, batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f.name: torch.randn(batch, f.num_levels, *f.num_tokens, *f.token_size, generator=g) for f in config.fields}


def config_with(rates=None, strategies=None, factors=(2,)) -> ModelConfig:
    d = tiny_config_dict(coarsen_factors=list(factors))
    if rates is not None:
        for f in d["fields"][:2]:
            f["masking"] = rates
    if strategies is not None:
        d["strategies"] = strategies
    return from_dict(ModelConfig, d)


def check_common_invariants(config, tokens, masked):
    for field in config.fields:
        x, m = tokens[field.name], masked[field.name]
        assert m.inputs.shape == x.shape and m.hidden.shape == x.shape[:5] == m.target.shape
        torch.testing.assert_close(m.targets, x[m.target], rtol=0, atol=0)  # targets are the clean tokens
        assert not (m.hidden & ~m.target).any()  # only targets are hidden
        assert (m.inputs[m.hidden] == 0).all()
        assert torch.equal(m.inputs[~m.target], x[~m.target])  # non-targets untouched
        if not field.predicted:
            assert not m.target.any() and torch.equal(m.inputs, x)


def test_bert_invariants_and_counts():
    config = config_with()
    tokens = clean_tokens(config)
    masked = Masker(config)(tokens, seed=3, key=(0, 0, 7))
    check_common_invariants(config, tokens, masked)
    for field in config.predicted_fields:
        per_level = masked[field.name].target.flatten(2).sum(-1)  # [B, L]
        S = field.tokens_per_level
        assert (per_level >= 1).all() and (per_level <= math.ceil(field.masking.total * S)).all()


def test_bert_rates_are_respected_statistically():
    config = config_with(rates={"total": 0.8, "mask": 0.5, "noise": 0.0, "coarsen": 0.0})
    tokens = clean_tokens(config, batch=64)
    m = Masker(config)(tokens, seed=0, key=(0, 0, 0))["temperature"]
    selected = m.target.float().mean().item()
    assert selected == pytest.approx(0.4, abs=0.05)  # E[ceil(r S)/S] with r ~ U(0, 0.8), S = 24
    hidden_share = (m.hidden.sum() / m.target.sum()).item()
    assert hidden_share == pytest.approx(0.5, abs=0.05)
    # unhidden targets are unchanged (no noise, no coarsening configured)
    kept = m.target & ~m.hidden
    assert torch.equal(m.inputs[kept], tokens["temperature"][kept])


def test_coarsening_is_real_block_averaging_d4():
    config = config_with(rates={"total": 1.0, "mask": 0.0, "noise": 0.0, "coarsen": 1.0}, factors=(2, 4))
    tokens = clean_tokens(config, batch=8)
    m = Masker(config)(tokens, seed=1, key=(0, 0, 1))["temperature"]
    x = tokens["temperature"][m.target]  # [N, 1, 4, 4]
    got = m.inputs[m.target]
    seen = set()
    for orig, coarse in zip(x, got):
        k = 4 if torch.allclose(coarse, coarse.mean().expand_as(coarse)) else 2
        seen.add(k)
        blocks = orig.reshape(1, 4 // k, k, 4 // k, k).mean(dim=(2, 4))  # numpy-free reference
        expected = blocks.repeat_interleave(k, 1).repeat_interleave(k, 2)
        torch.testing.assert_close(coarse, expected)
        assert coarse.var() < orig.var()  # detail removed
    assert seen == {2, 4}
    torch.testing.assert_close(coarsen_tokens(x, 2).mean(dim=(2, 3)), x.mean(dim=(2, 3)))  # means conserved


def test_noise_changes_tokens_but_keeps_them_finite():
    config = config_with(rates={"total": 1.0, "mask": 0.0, "noise": 1.0, "coarsen": 0.0})
    tokens = clean_tokens(config)
    m = Masker(config)(tokens, seed=2, key=(0, 0, 2))["u_component_of_wind"]
    changed = (m.inputs[m.target] != tokens["u_component_of_wind"][m.target]).flatten(1).any(1)
    assert changed.all() and torch.isfinite(m.inputs).all()


def test_masks_are_deterministic_per_key_and_independent_per_level_d8():
    config = config_with()
    tokens = clean_tokens(config)
    a = Masker(config)(tokens, seed=5, key=(0, 0, 11))
    b = Masker(config)(tokens, seed=5, key=(0, 0, 11))
    c = Masker(config)(tokens, seed=5, key=(0, 1, 11))  # another rank
    assert all(torch.equal(a[k].inputs, b[k].inputs) and torch.equal(a[k].target, b[k].target) for k in a)
    assert not torch.equal(a["temperature"].target, c["temperature"].target)
    # adding a level leaves the masks of the existing levels unchanged
    d = tiny_config_dict()
    d["fields"][0]["levels"] = [850, 500, 250]
    wider = from_dict(ModelConfig, d)
    tokens3 = dict(tokens, temperature=torch.cat([tokens["temperature"], tokens["temperature"][:, :1]], 1))
    e = Masker(wider)(tokens3, seed=5, key=(0, 0, 11))
    assert torch.equal(e["temperature"].target[:, :2], a["temperature"].target)
    assert torch.equal(e["u_component_of_wind"].target, a["u_component_of_wind"].target)


def test_forecast_hides_last_slices_everywhere():
    config = config_with(strategies=[{"kind": "forecast", "forecast_slices": 2}])
    tokens = clean_tokens(config)
    masked = Masker(config)(tokens, seed=0, key=(1, 0, 0))
    check_common_invariants(config, tokens, masked)
    for field in config.predicted_fields:
        m = masked[field.name]
        T = field.num_tokens[0]
        assert m.target[:, :, T - 2:].all() and not m.target[:, :, : T - 2].any()
        assert torch.equal(m.hidden, m.target)


def test_temporal_interpolation_default_and_explicit_slices():
    config = config_with(strategies=[{"kind": "temporal_interpolation"}])
    m = Masker(config)(clean_tokens(config), 0, (0,))["temperature"]
    assert m.target[:, :, 1].all() and m.target.sum() == m.target[:, :, 1].numel()  # T // 2 of 3
    config = config_with(strategies=[{"kind": "temporal_interpolation", "interpolation_slices": [0, 2]}])
    m = Masker(config)(clean_tokens(config), 0, (0,))["temperature"]
    assert m.target[:, :, [0, 2]].all() and not m.target[:, :, 1].any()


def test_spatial_interpolation_hides_one_block_shared_by_fields():
    config = config_with(strategies=[{"kind": "spatial_interpolation", "region": [1, 2]}])
    tokens = clean_tokens(config, batch=16)
    masked = Masker(config)(tokens, 4, (0, 0, 3))
    check_common_invariants(config, tokens, masked)
    t, u = masked["temperature"].target, masked["u_component_of_wind"].target
    assert torch.equal(t, u)
    assert (t.flatten(1).sum(1) == 2 * 3 * 1 * 2).all()  # levels x times x block
    block = t[:, 0, 0]  # [B, Y, X]
    for b in range(16):
        rows, cols = torch.nonzero(block[b], as_tuple=True)
        assert rows.unique().numel() == 1 and (cols.max() - cols.min()).item() == 1
    assert len({tuple(torch.nonzero(block[b])[0].tolist()) for b in range(16)}) > 1  # places vary


def test_identity_predicts_everything_and_hides_nothing():
    config = config_with(strategies=[{"kind": "identity"}])
    tokens = clean_tokens(config)
    m = Masker(config)(tokens, 0, (0,))["temperature"]
    assert m.target.all() and not m.hidden.any() and torch.equal(m.inputs, tokens["temperature"])


def test_strategy_mixture_draws_each_strategy():
    config = config_with(strategies=[{"kind": "BERT", "weight": 1.0}, {"kind": "forecast", "weight": 1.0}])
    tokens = clean_tokens(config, batch=2)
    T = config.fields[0].num_tokens[0]
    kinds = set()
    for i in range(20):
        m = Masker(config)(tokens, 0, (0, 0, i))["temperature"]
        is_forecast = m.target[:, :, T - 1].all() and not m.target[:, :, : T - 1].any()
        kinds.add("forecast" if is_forecast else "BERT")
    assert kinds == {"BERT", "forecast"}


def test_masker_with_explicit_strategy_overrides_config():
    config = config_with()
    m = Masker(config, strategies=(StrategyConfig("forecast", forecast_slices=1),))(clean_tokens(config), 0, (0,))
    assert m["temperature"].target[:, :, -1].all()
    assert np.isclose(m["temperature"].target.float().mean().item(), 1 / 3)


def test_forecast_context_noise_shifts_visible_tokens_by_a_token_constant_of_the_stated_size():
    amplitude = 0.6
    config = config_with(strategies=[{"kind": "forecast", "context_noise": amplitude}])
    tokens = clean_tokens(config, batch=64)
    masked = Masker(config)(tokens, seed=5, key=(0, 0, 3))
    clean = Masker(config_with(strategies=[{"kind": "forecast"}]))(tokens, seed=5, key=(0, 0, 3))
    for field in config.fields:
        x, m, c = tokens[field.name], masked[field.name], clean[field.name]
        assert torch.equal(m.target, c.target) and torch.equal(m.hidden, c.hidden)
        assert torch.equal(m.targets, x[m.target])  # the targets stay clean
        assert (m.inputs[m.hidden] == 0).all()
        if not field.predicted:  # conditioning and forcing are known exactly
            assert torch.equal(m.inputs, x)
            continue
        shift = (m.inputs - x)[~m.target]  # [n, t, y, x]
        # one shift per token, the same at all of its points
        torch.testing.assert_close(shift, shift[:, :1, :1, :1].expand_as(shift), rtol=0, atol=1e-6)
        per_token = shift[:, 0, 0, 0].double()
        # sigma ~ U(0, a) times eps ~ N(0, 1): mean 0, variance E[sigma^2] = a^2 / 3 (256 sigma draws: ~6 %)
        assert abs(per_token.mean().item()) < 0.05
        assert per_token.var().item() == pytest.approx(amplitude**2 / 3, rel=0.2)
        assert per_token.abs().max().item() < 6 * amplitude


def test_context_noise_is_keyed_and_refused_outside_forecast():
    config = config_with(strategies=[{"kind": "forecast", "context_noise": 0.3}])
    tokens = clean_tokens(config)
    a, b = Masker(config)(tokens, 1, (0, 4)), Masker(config)(tokens, 1, (0, 4))
    assert all(torch.equal(a[n].inputs, b[n].inputs) for n in a)
    assert not torch.equal(a["temperature"].inputs, Masker(config)(tokens, 1, (0, 5))["temperature"].inputs)
    with pytest.raises(ConfigError, match="context_noise: only the forecast strategy"):
        config_with(strategies=[{"kind": "BERT", "context_noise": 0.3}])
    with pytest.raises(ConfigError, match="context_noise: -0.1 must be >= 0"):
        config_with(strategies=[{"kind": "forecast", "context_noise": -0.1}])
