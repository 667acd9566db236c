"""Coarse-model conditioning fields: the truth conservatively coarsened to the classical model's
Gaussian grid and back, through the sampler's transform hook."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.data import open_store
from atmorep_coupler.data.conditioning import CLASSICAL_RESOLUTION, classical_grid, coarse_reader, coarsen
from atmorep_coupler.data.sampler import transform_reader
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.regrid import LatLonGrid

LAT = 90.0 - 5.625 * (np.arange(32) + 0.5)  # the default data's 32 x 64 grid
LON = 5.625 * np.arange(64)


def test_default_resolution_and_grid_are_the_classical_components():
    pytest.importorskip("dinosaur")
    from atmorep_coupler.data.held_suarez import _gaussian_grid
    from components.classical import ClassicalConfig

    assert CLASSICAL_RESOLUTION == ClassicalConfig.resolution == "T15"
    for n in (10, 15, 21, 42):
        grid = classical_grid(f"T{n}")
        nlon, nlat = _gaussian_grid(n).nodal_shape
        assert grid.shape == (nlat, nlon)
    assert classical_grid().shape == (24, 48) and classical_grid().is_global


def test_coarsening_conserves_the_integral_and_removes_the_small_scales():
    area = LatLonGrid.from_centers(LAT, LON).area
    lat, lon = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    large = 10.0 * np.cos(lat) * np.cos(lon) + 5.0 * np.sin(lat)  # wavenumbers 0-1: resolved at T15
    small = np.where((np.arange(32)[:, None] + np.arange(64)[None, :]) % 2 == 0, 1.0, -1.0)  # grid-scale
    fields = np.stack([large, small, large + small])
    coarse = coarsen(fields, LAT, LON)
    assert coarse.shape == fields.shape and coarse.dtype == np.float32
    integrals = (fields * area).sum((-1, -2))
    np.testing.assert_allclose((coarse * area).sum((-1, -2)), integrals, atol=1e-5 * np.abs(fields).max() * area.sum())
    assert np.abs(coarse[0] - large).max() < 0.1 * np.abs(large).max()  # large scales survive
    assert np.sqrt(np.mean(coarse[1] ** 2)) < 0.15  # the grid-scale checkerboard (rms 1) is (almost) gone
    np.testing.assert_allclose(coarse[2], coarse[0] + coarse[1], atol=1e-5)  # a linear operator
    np.testing.assert_allclose(coarsen(np.full((32, 64), 273.15), LAT, LON), 273.15, rtol=1e-6)


def test_reader_windows_times_and_series(tiny_store):
    store = open_store(tiny_store)
    read = transform_reader("coarse:T15")
    full = read(store, "temperature", time=slice(2, 5), levels=[500, 850])
    assert full.shape == (3, 2, 32, 64)
    np.testing.assert_array_equal(  # every time step and level is coarsened on its own
        full[1, 0], coarsen(store.read("temperature", time=[3], levels=[500])[0, 0], store.latitudes, store.longitudes)
    )
    cols = np.arange(56, 72)  # a window across the dateline, as the sampler asks for it
    window = read(store, "t", time=slice(2, 5), levels=[500, 850], lat=slice(4, 12), lon=cols)
    np.testing.assert_array_equal(window, full[:, :, 4:12][..., cols % 64])
    np.testing.assert_array_equal(read(store, "co2_equivalent", time=slice(0, 3)),
                                  store.read("co2_equivalent", time=slice(0, 3)))
    np.testing.assert_array_equal(transform_reader("coarse")(store, "temperature", time=[3], levels=[500]),
                                  full[1:2, :1])  # the bare name means the classical default, T15
    coarser = coarse_reader("T10")(store, "temperature", time=[3], levels=[500])
    assert not np.allclose(coarser, full[1:2, :1])


def test_bad_transforms_name_the_problem():
    with pytest.raises(ConfigError, match="coarse conditioning resolution: expected 'T<N>'"):
        transform_reader("coarse:X9")
    with pytest.raises(ConfigError, match=r"transform 'blur:3' is not registered .* families: \['coarse:<argument>'\]"):
        transform_reader("blur:3")
