"""Paired data: the coarse store is the fine store's exact area-weighted coarsening, in the same layout."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from atmorep_coupler.data import open_store
from atmorep_coupler.data.paired import PairedDataConfig, generate_paired

# Generating even the tiny pair runs and compiles the T42 core (30-60 s): end-to-end, hence slow.
pytestmark = pytest.mark.slow

TINY = PairedDataConfig(days=1.0, spinup_days=1.0, pressure_levels_hPa=(500.0, 850.0))


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    return generate_paired(TINY, tmp_path_factory.mktemp("pair"), progress=False)


def _numpy_coarsening(fine: np.ndarray, lat_edges: np.ndarray) -> np.ndarray:
    """Area-weighted mean over 2 x 2 blocks of a 0°-centred grid, written out: latitude-band weights
    sin(north edge) - sin(south edge) on rows 2i, 2i+1; longitude overlaps 1/4, 1/2, 1/4 of columns
    2j-1, 2j, 2j+1 (coarse cell j spans [5.625 j - 2.8125, 5.625 j + 2.8125])."""
    band = np.abs(np.diff(np.sin(np.deg2rad(lat_edges))))  # fine rows
    rows = (fine[..., 0::2, :] * band[0::2, None] + fine[..., 1::2, :] * band[1::2, None]) / (
        band[0::2, None] + band[1::2, None])
    left, mid, right = np.roll(rows, 1, axis=-1), rows, np.roll(rows, -1, axis=-1)
    return (0.25 * left + 0.5 * mid + 0.25 * right)[..., 0::2]


def test_coarse_store_is_the_conservative_coarsening_of_the_fine_one(tiny_pair):
    fine_path, coarse_path = tiny_pair
    fine, coarse = open_store(fine_path), open_store(coarse_path)
    assert fine.dataset.sizes == {"time": 8, "level": 2, "latitude": 64, "longitude": 128}
    assert coarse.dataset.sizes == {"time": 8, "level": 2, "latitude": 32, "longitude": 64}
    np.testing.assert_allclose(coarse.latitudes, 90.0 - 5.625 * (np.arange(32) + 0.5))
    np.testing.assert_allclose(coarse.longitudes, 5.625 * np.arange(64))
    np.testing.assert_array_equal(coarse.times, fine.times)
    edges = 90.0 - 180.0 * np.arange(65) / 64
    f, c = zarr.open_group(fine_path, mode="r"), zarr.open_group(coarse_path, mode="r")
    for name in ("temperature", "geopotential", "u_component_of_wind", "surface_pressure", "sea_surface_temperature"):
        expected = _numpy_coarsening(f[name][...].astype(np.float64), edges)
        got = c[name][...]
        scale = np.abs(expected).max()
        # float32 storage: one rounding of values ~1e2..1e5 -> relative 6e-8; a wrong weight errs by >1e-4
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-7 * scale, err_msg=name)
        assert c[name].attrs["units"] == f[name].attrs["units"]
    np.testing.assert_array_equal(c["co2_equivalent"][...], f["co2_equivalent"][...])
    # it is the same weather: the coarse field is far closer to the fine one's block mean than to another time
    t = c["temperature"][...]
    assert np.abs(t[1:] - t[:-1]).mean() > 0


def test_paired_stores_carry_statistics_and_units(tiny_pair):
    for path in tiny_pair:
        store = open_store(path)
        store.check_units("temperature", statistics=store.normalization)
        mean = np.asarray(store.normalization.mean("temperature", [0], mode="global"))
        assert mean.shape == (1, 2) and np.all((200 < mean) & (mean < 300)), mean  # per level, in K
