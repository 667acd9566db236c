"""Spherical-harmonic transforms (regrid/harmonics.py) against scipy's harmonics: power at the harmonic's own
wavenumber, Parseval, and the large-scale part of a field, on the data's regular grid and on Gaussian grids."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.errors import DataError
from atmorep_coupler.regrid.harmonics import coefficients, low_pass, power_spectrum, synthesis

pytest.importorskip("scipy.special")

from tests.spherical import gaussian_latitudes, real_harmonic, regular_latitudes  # noqa: E402


def band_weights(lat: np.ndarray) -> np.ndarray:
    band = np.abs(np.diff(np.sin(np.deg2rad(90.0 - 180.0 * np.arange(lat.size + 1) / lat.size))))
    return band / band.mean()


def test_power_of_a_harmonic_on_the_fine_regular_grid_and_parseval():
    lat, lon = regular_latitudes(64), 2.8125 * np.arange(128)
    for l, m in ((3, 0), (10, 4), (30, 21)):
        field = real_harmonic(l, m, lat, lon)
        power = power_spectrum(field, lat, 63)
        # Fejér's rule on 64 rows is exact for degree < 64: no leakage to wavenumbers l' with l + l' < 64
        assert power[l] / power[:64 - l].sum() > 1 - 1e-9, (l, m)
        assert power[64 - l:].sum() < 1e-5 * power[l], (l, m)
        np.testing.assert_allclose(power[l], 1 / (4 * np.pi), rtol=1e-9)
        np.testing.assert_allclose(power.sum(), (band_weights(lat)[:, None] * field**2).mean(), rtol=0.01)


def test_power_on_gaussian_grids_is_exact_in_either_row_order():
    lon = 360.0 * np.arange(64) / 64
    g = gaussian_latitudes(32)
    field = 3.0 * real_harmonic(5, 2, g, lon) + 1.5 * real_harmonic(12, 0, g, lon) - 0.5 * real_harmonic(21, 21, g, lon)
    spectrum = power_spectrum(np.stack([field, 2 * field]), g, 21)
    expected = np.zeros(22)
    expected[[5, 12, 21]] = np.array([9.0, 2.25, 0.25]) / (4 * np.pi)
    np.testing.assert_allclose(spectrum[0], expected, atol=1e-12)
    np.testing.assert_allclose(spectrum[1], 4 * expected, atol=1e-12)
    gauss = np.polynomial.legendre.leggauss(32)[1]
    assert spectrum[0].sum() == pytest.approx((field**2 * gauss[:, None]).sum() / 2 / 64, rel=1e-10)
    np.testing.assert_allclose(power_spectrum(field[::-1], g[::-1], 21), spectrum[0], atol=1e-12)


@pytest.mark.parametrize("grid", ["regular", "gaussian", "regular_south_first"])
def test_low_pass_keeps_the_large_scales_and_removes_the_rest(grid):
    """T10 truncation of a sum of harmonics of degrees 0..17 keeps exactly those of degree <= 10."""
    lat = {"regular": regular_latitudes(32), "gaussian": gaussian_latitudes(32),
           "regular_south_first": regular_latitudes(32)[::-1]}[grid]
    lon = 5.625 * np.arange(64) + 2.0  # an offset origin changes phases only
    large = 280.0 * real_harmonic(0, 0, lat, lon) + 4.0 * real_harmonic(2, 0, lat, lon) \
        + 2.0 * real_harmonic(6, 3, lat, lon) - 1.0 * real_harmonic(10, 10, lat, lon)
    small = 0.7 * real_harmonic(11, 0, lat, lon) + 0.5 * real_harmonic(14, 5, lat, lon) + 0.3 * real_harmonic(17, 12, lat, lon)
    out = low_pass(np.stack([large + small, small]), lat, 10)
    np.testing.assert_allclose(out[0], large, atol=1e-10 * np.abs(large).max())
    np.testing.assert_allclose(out[1], 0.0, atol=1e-12 * np.abs(large).max())
    # synthesis inverts the coefficients of a band-limited field
    np.testing.assert_allclose(synthesis(coefficients(large, lat, 10), lat, 64), large, atol=1e-10 * 280)


def test_refuses_grids_it_cannot_transform_exactly():
    lat = np.linspace(-80, 80, 32)
    with pytest.raises(DataError, match="neither Gaussian nor equally spaced"):
        low_pass(np.zeros((32, 64)), lat, 10)
    with pytest.raises(DataError, match="truncation T40"):
        low_pass(np.zeros((32, 64)), regular_latitudes(32), 40)
    with pytest.raises(DataError, match="31 latitudes"):
        power_spectrum(np.zeros((32, 64)), regular_latitudes(31), 10)
