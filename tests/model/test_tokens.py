"""Tokenisation and token metadata against explicit index formulas and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.data.tokens import META_FEATURES, detokenize, log_pressure, token_metadata, tokenize


def test_tokenize_matches_index_formula_and_round_trips():
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(2, 3, 6, 8, 12))  # [B, L, T*t, Y*y, X*x] with t,y,x = 2,4,3
    tok = tokenize(cube, (2, 4, 3))
    assert tok.shape == (2, 3, 3, 2, 4, 2, 4, 3)
    b, lev, T, Y, X, t, y, x = 1, 2, 2, 1, 3, 1, 2, 0
    assert tok[b, lev, T, Y, X, t, y, x] == cube[b, lev, T * 2 + t, Y * 4 + y, X * 3 + x]
    np.testing.assert_array_equal(detokenize(tok), cube)
    tt = tokenize(torch.from_numpy(cube), (2, 4, 3))
    np.testing.assert_array_equal(tt.numpy(), tok)
    np.testing.assert_array_equal(detokenize(tt).numpy(), cube)
    with pytest.raises(ValueError, match="does not split"):
        tokenize(cube, (4, 4, 3))


def test_token_metadata_values():
    # one sample, 2 time steps per token; token centres at 06:00 on 2001-07-02 (day 182 of 365)
    times = np.array([["2001-07-02T03", "2001-07-02T09"]], dtype="datetime64[ns]")
    lat = np.array([[30.0, 20.0]])  # one token row, centre 25 deg
    lon = np.array([[356.0, 358.0, 2.0, 4.0, 10.0, 20.0]])  # two tokens of 3 columns: centres ~0.67, 10.67
    meta = token_metadata(times, lat, lon, [1000.0, 10.0], (2, 2, 3))
    assert meta.shape == (1, 2, 1, 1, 2, len(META_FEATURES))
    f = dict(zip(META_FEATURES, np.moveaxis(meta, -1, 0)))
    doy = 2 * np.pi * (182 + 0.25) / 365
    np.testing.assert_allclose(f["sin_doy"], np.sin(doy), atol=1e-6)
    np.testing.assert_allclose(f["cos_doy"], np.cos(doy), atol=1e-6)
    np.testing.assert_allclose(f["sin_hour"], 1.0, atol=1e-6)  # 06:00 is a quarter day
    np.testing.assert_allclose(f["cos_hour"], 0.0, atol=1e-6)
    np.testing.assert_allclose(f["sin_lat"], np.sin(np.deg2rad(25)), atol=1e-6)
    # the first token's centre is the circular mean of 356, 358, 2 degrees = -1.33 (not 238.67)
    def circular_mean(deg):
        rad = np.deg2rad(deg)
        return np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())

    assert np.rad2deg(circular_mean([356, 358, 2])) == pytest.approx(-4 / 3, abs=1e-3)
    np.testing.assert_allclose(f["sin_lon"][0, :, 0, 0, 0], np.sin(circular_mean([356, 358, 2])), atol=1e-6)
    np.testing.assert_allclose(f["cos_lon"][0, :, 0, 0, 1], np.cos(circular_mean([4, 10, 20])), atol=1e-6)
    np.testing.assert_allclose(f["log_pressure"][0, :, 0, 0, 0], [0.0, 2 / 3], atol=1e-6)
    np.testing.assert_array_equal(f["surface"], 0.0)
    assert np.all(np.abs(meta) <= 1.0 + 1e-6)


def test_surface_metadata_and_log_pressure():
    times = np.array([["2000-01-01T00"]], dtype="datetime64[ns]")
    meta = token_metadata(times, np.array([[0.0]]), np.array([[0.0]]), [], (1, 1, 1))
    assert meta.shape == (1, 1, 1, 1, 1, len(META_FEATURES))
    assert meta[..., META_FEATURES.index("surface")].item() == 1.0
    assert meta[..., META_FEATURES.index("log_pressure")].item() == 0.0
    np.testing.assert_allclose(log_pressure([1000, 100, 1]), [0, 1 / 3, 1])
