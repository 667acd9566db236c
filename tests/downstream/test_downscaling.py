"""Downscaling: paired batches read the fine truth, freezing keeps the pretrained network bit for bit, the
global tiling covers every cell once, and the scores equal numpy computations of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.data.tokens import detokenize, tokenize
from atmorep_coupler.downstream.evaluate import downscale, global_origins, score_downscaling
from atmorep_coupler.downstream.finetune import fine_tune
from atmorep_coupler.downstream.model import DownscalingConfig, downscaling_model, downscaling_model_config
from atmorep_coupler.downstream.pairs import DownscalingPairs, downscaling_masks
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.multiformer import Multiformer
from atmorep_coupler.regrid.harmonics import power_spectrum

from .conftest import base_config

CONFIG = DownscalingConfig(levels=(850.0, 500.0), embed_dim=16, steps=3, batch_size=4, lr=3e-3)


def _pretrained():
    torch.manual_seed(123)
    base = base_config()
    return base, Multiformer(base).state_dict()


def _pairs(analytic_pair, base, config=CONFIG, **kwargs):
    field = downscaling_model_config(base, config).fields[-1]
    return DownscalingPairs(*analytic_pair, base, field, batch_size=config.batch_size, **kwargs)


def test_fine_tokens_hold_the_fine_truth_minus_bilinear_interpolation(analytic_pair):
    base, _ = _pretrained()
    pairs = _pairs(analytic_pair, base)
    batch = pairs.batch(0)
    name = pairs.field.name
    cube = detokenize(batch.tokens[name].numpy())  # [B, L, nt, ny, nx]
    times, rows, cols = pairs.fine_window(batch.origins)
    for b in range(cube.shape[0]):
        truth = pairs.fine.read("temperature", time=slice(int(times[b, 0]), int(times[b, -1]) + 1),
                                levels=[850.0, 500.0])[:, :, rows[b][:, None], cols[b][None, :]]
        coarse = pairs.coarse.read("temperature", time=times[b], levels=[850.0, 500.0]).astype(np.float64)
        base_interp = pairs.maps["bilinear"].apply(coarse)[:, :, rows[b][:, None], cols[b][None, :]]
        rebuilt = cube[b].transpose(1, 0, 2, 3) * pairs.std[None, :, None, None] + base_interp
        np.testing.assert_allclose(rebuilt, truth, rtol=0, atol=1e-4)
    # the fine window lies over the coarse one: the same latitude band
    coarse_rows = batch.origins[:, 1:2] + np.arange(8)
    lat_c, lat_f = pairs.coarse.latitudes[coarse_rows], pairs.fine.latitudes[rows]
    assert np.all(np.abs(lat_f.mean(1) - lat_c.mean(1)) < 1e-9)
    # the departure is normalized over the training period (all 48 times here)
    np.testing.assert_allclose(pairs.departure_at(np.arange(48)).astype(np.float64).std(axis=(0, 2, 3)), 1.0,
                               rtol=1e-6)


def test_freezing_leaves_the_pretrained_network_bitwise_unchanged(analytic_pair):
    base, weights = _pretrained()
    model = downscaling_model(base, weights, CONFIG)
    pairs = _pairs(analytic_pair, base)
    pretrained = Multiformer(base)
    pretrained.load_state_dict(weights)
    batch = pairs.batch(7)
    # the old fields' own predictions (BERT targets of the pretrained fields) before and after fine-tuning
    masks = downscaling_masks(batch.tokens, pairs.field.name)
    for name in ("temperature", "u_component_of_wind"):
        hidden = torch.zeros_like(masks[name].hidden)
        hidden[:, :, -1] = True  # forecast the last time slice
        x = batch.tokens[name]
        masks[name] = type(masks[name])(torch.where(hidden[..., None, None, None], 0.0, x), hidden, hidden, x[hidden])
    old_meta = {k: v for k, v in batch.meta.items() if k != pairs.field.name}
    old_masks = {k: v for k, v in masks.items() if k != pairs.field.name}
    with torch.no_grad():
        reference = pretrained(old_masks, old_meta)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history = fine_tune(model, pairs, CONFIG, progress=False)
    after = model.state_dict()
    old = [k for k in before if not k.startswith(f"fields.{pairs.field.name}.")]
    new = [k for k in before if k.startswith(f"fields.{pairs.field.name}.")]
    assert old and new and len(history) == 3
    for key in old:
        assert torch.equal(before[key], after[key]), key
        assert torch.equal(after[key], weights[key]), key
    assert sum(not torch.equal(before[k], after[k]) for k in new) > len(new) // 2
    with torch.no_grad():
        out = model(masks, batch.meta)
    for name, ref in reference.items():
        assert ref.members.shape[0] > 0 and torch.equal(out[name].members, ref.members), name


def test_without_freezing_the_pretrained_network_trains_too(analytic_pair):
    base, weights = _pretrained()
    config = DownscalingConfig(levels=(850.0, 500.0), embed_dim=16, steps=2, batch_size=4, freeze=False)
    model = downscaling_model(base, weights, config)
    fine_tune(model, _pairs(analytic_pair, base, config), config, progress=False)
    changed = [k for k, v in model.state_dict().items() if k in weights and not torch.equal(v, weights[k])]
    assert any(k.startswith("fields.temperature.encoder") for k in changed)


def test_global_tiles_cover_every_cell_once(analytic_pair):
    base, _ = _pretrained()
    pairs = _pairs(analytic_pair, base)
    origins = global_origins(pairs, 5)
    coarse = np.zeros((32, 64), int)
    for _, r, c in origins:
        coarse[r:r + 8, c:c + 16] += 1
    _, rows, cols = pairs.fine_window(origins)
    fine = np.zeros((64, 128), int)
    for r, c in zip(rows, cols):
        fine[np.ix_(r, c)] += 1
    assert (coarse == 1).all() and (fine == 1).all()
    with pytest.raises(ConfigError, match="does not tile"):
        pairs.sampler.extent = (3, 7, 16)
        global_origins(pairs, 0)


def _weights(lat):
    band = np.abs(np.diff(np.sin(np.deg2rad(90.0 - 180.0 * np.arange(lat.size + 1) / lat.size))))
    return band / band.mean()


def test_scores_equal_numpy_computations_of_their_definitions(analytic_pair):
    base, weights = _pretrained()
    model = downscaling_model(base, weights, CONFIG)
    pairs = _pairs(analytic_pair, base)
    start = pairs.fine.times[36].astype("datetime64[s]").item()
    result = score_downscaling({"model": model}, pairs, start)
    assert result["windows"] == 4 and result["times"] == 12
    w = _weights(pairs.fine.latitudes)[:, None]
    truth = pairs.fine.read("temperature", time=slice(36, 48), levels=[850.0, 500.0]).astype(np.float64)
    interp = pairs.maps["bilinear"].apply(
        pairs.coarse.read("temperature", time=slice(36, 48), levels=[850.0, 500.0]).astype(np.float64))
    rmse = np.sqrt(np.mean((w * (interp - truth) ** 2).mean(axis=(-2, -1)), axis=0))
    np.testing.assert_allclose(result["systems"]["bilinear"]["rmse"], rmse, rtol=1e-6)
    members = np.concatenate([downscale(model, pairs, t) for t in (36, 39, 42, 45)]).astype(np.float64)  # [12, M, L, ..]
    mean = members.mean(1)
    model_rmse = np.sqrt(np.mean((w * (mean - truth) ** 2).mean(axis=(-2, -1)), axis=0))
    spread = np.sqrt(np.mean((w * members.var(1, ddof=1)).mean(axis=(-2, -1)), axis=0))
    M = members.shape[1]
    s = result["systems"]["model"]
    np.testing.assert_allclose(s["rmse"], model_rmse, rtol=1e-5)
    np.testing.assert_allclose(s["spread_skill"], np.sqrt((M + 1) / M) * spread / model_rmse, rtol=1e-5)
    truth_power = np.asarray(result["truth_spectrum"])  # [L, l]
    np.testing.assert_allclose(truth_power, power_spectrum(truth, pairs.fine.latitudes, 63).mean(0), rtol=1e-10)
    ratio = np.asarray(result["systems"]["bilinear"]["spectrum_ratio"])
    large = truth_power > 1e-3 * truth_power.sum(-1, keepdims=True)  # the analytic fields' large scales
    np.testing.assert_allclose(ratio[large], 1.0, atol=0.05)  # interpolation keeps the large scales


def test_bad_input_ends_in_a_named_error(analytic_pair, tmp_path, capsys):
    from atmorep_coupler.errors import DataError
    from atmorep_coupler.finetune import main

    assert main([str(tmp_path / "missing.pt"), "--pair", str(tmp_path), "--quiet"]) == 2
    assert "missing.pt" in capsys.readouterr().err
    base, _ = _pretrained()
    field = downscaling_model_config(base, DownscalingConfig(levels=(850.0, 500.0), refinement=4)).fields[-1]
    with pytest.raises(DataError, match="is not 4 times the coarse 32x64"):
        DownscalingPairs(*analytic_pair, base, field, batch_size=2)
    with pytest.raises(ConfigError, match="refinement: 1 must be >= 2"):
        downscaling_model_config(base, DownscalingConfig(refinement=1))


def test_the_record_is_read_lazily_and_the_sampled_values_stay_bitwise_those_of_the_whole_record(analytic_pair):
    """Paired batches read a few time chunks, never the record: the tokens equal, bit for bit, those cut from
    the whole record held in memory (the earlier implementation's arrays, rebuilt here), and the departure
    scale streamed chunk by chunk equals numpy's over the whole training period."""
    from atmorep_coupler.downstream import pairs as pairs_module

    base, _ = _pretrained()
    pairs = _pairs(analytic_pair, base, end=pairs_module.dt.datetime(2000, 1, 5))
    assert pairs.chunk < pairs.fine.times.size  # the analytic store is chunked in time
    truth = pairs.fine.read("temperature", levels=[850.0, 500.0])
    coarse = pairs.coarse.read("temperature", levels=[850.0, 500.0])
    baseline = pairs.maps["bilinear"].apply(coarse.astype(np.float64)).astype(np.float32)
    used = np.unique(pairs.sampler.time_starts[:, None] + np.arange(pairs.sampler.extent[0]))
    reference_std = (truth - baseline)[used].astype(np.float64).std(axis=(0, 2, 3))
    np.testing.assert_allclose(pairs.std, reference_std, rtol=1e-6)
    departure = (truth - baseline) / pairs.std[None, :, None, None]  # the whole record, as before
    for step in range(3):
        batch = pairs.batch(step)
        times, rows, cols = pairs.fine_window(batch.origins)
        cube = departure[times[:, :, None, None], :, rows[:, None, :, None], cols[:, None, None, :]]
        expect = tokenize(np.ascontiguousarray(np.moveaxis(cube, -1, 1)), pairs.field.token_size)
        assert np.array_equal(batch.tokens[pairs.field.name].numpy(), expect)
        assert len(pairs._chunks) <= pairs_module.CACHED_CHUNKS
    assert np.array_equal(pairs.truth_at(np.arange(48)), truth)
    assert np.array_equal(pairs.baseline_at(np.arange(48)), baseline)
