"""The large-scale relaxation (component/large_scales.py) on fields made of spherical harmonics: the harmonics up
to the truncation move by the weight toward the coarse field's, the others stay."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from atmorep_coupler.component.large_scales import LargeScaleNudging, relax_large_scales

special = pytest.importorskip("scipy.special")


def harmonic(n: int, m: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    theta, phi = np.deg2rad(90.0 - lat)[:, None], np.deg2rad(lon)[None, :]
    return np.real(special.sph_harm_y(n, m, theta, phi))


def test_harmonics_up_to_the_truncation_relax_by_the_weight():
    lat, lon = 90.0 - 5.625 * (np.arange(32) + 0.5), 5.625 * np.arange(64)
    state_large = 250.0 * harmonic(0, 0, lat, lon) + 3.0 * harmonic(4, 2, lat, lon)
    state_small = 0.8 * harmonic(14, 3, lat, lon)
    coarse_large = 252.0 * harmonic(0, 0, lat, lon) - 2.0 * harmonic(7, 1, lat, lon)
    coarse_small = 0.4 * harmonic(12, 12, lat, lon)  # beyond T10: ignored
    out = relax_large_scales((state_large + state_small).astype(np.float32), coarse_large + coarse_small, lat, 0.3, 10)
    assert out.dtype == np.float32
    expect = state_large + 0.3 * (coarse_large - state_large) + state_small
    np.testing.assert_allclose(out, expect, rtol=0, atol=3e-5)


def test_weight_is_the_exact_exponential_relaxation():
    nudging = LargeScaleNudging(tau=dt.timedelta(hours=12))
    assert nudging.weight(3 * 3600.0) == pytest.approx(1.0 - np.exp(-0.25), rel=1e-12)
    assert 0.0 < nudging.weight(1e9) <= 1.0  # no overshoot for any step
    assert LargeScaleNudging().weight(3 * 3600.0) == 0.0


def _bias_store(path, table: np.ndarray, lat: np.ndarray, levels=(500.0, 850.0)):
    import xarray as xr

    xr.Dataset({"temperature": (("month", "level", "latitude"), table)},
               coords={"month": np.arange(1, 13), "level": list(levels), "latitude": lat}).to_zarr(path, consolidated=False)
    return path


def test_coarse_bias_is_interpolated_between_month_middles(tmp_path):
    from atmorep_coupler.component.large_scales import CoarseBias

    lat = 90.0 - 5.625 * (np.arange(32) + 0.5)
    table = np.random.default_rng(0).normal(size=(12, 2, 32))
    bias = CoarseBias(_bias_store(tmp_path / "b.zarr", table, lat), {"temperature": (850.0,)}, lat)
    np.testing.assert_allclose(bias.at("temperature", 2.25)[..., 0], 0.75 * table[2, 1:] + 0.25 * table[3, 1:])
    np.testing.assert_allclose(bias.at("temperature", 11.5)[..., 0], 0.5 * table[11, 1:] + 0.5 * table[0, 1:])
    assert bias.at("temperature", 4.0).shape == (1, 32, 1)


def test_coarse_bias_store_problems_are_named(tmp_path):
    from atmorep_coupler.component.large_scales import CoarseBias
    from atmorep_coupler.errors import DataError

    lat = 90.0 - 5.625 * (np.arange(32) + 0.5)
    path = _bias_store(tmp_path / "b.zarr", np.zeros((12, 2, 32)), lat)
    with pytest.raises(DataError, match="no variable 'geopotential'"):
        CoarseBias(path, {"geopotential": (500.0,)}, lat)
    with pytest.raises(DataError, match=r"not the field's \[250.0\]"):
        CoarseBias(path, {"temperature": (250.0, 500.0)}, lat)
    with pytest.raises(DataError, match="other latitudes"):
        CoarseBias(path, {"temperature": (500.0,)}, lat[::-1])
    with pytest.raises(DataError, match="not a readable bias store"):
        CoarseBias(tmp_path / "absent.zarr", {"temperature": (500.0,)}, lat)
