"""Climate diagnostics (analysis/climate.py) against independent computations: analytic spherical means,
numpy re-implementations, spherical harmonics from scipy, and an end-to-end comparison on the tiny store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.analysis import climate
from atmorep_coupler.analysis.climate import (
    area_mean,
    latitude_weights,
    power_spectrum,
    transient_eddy_kinetic_energy,
    transient_variance,
    trend_per_year,
    zonal_mean,
)
from atmorep_coupler.data import open_store
from atmorep_coupler.errors import DataError

pytest.importorskip("scipy.special")

from tests.spherical import gaussian_latitudes, real_harmonic, regular_latitudes  # noqa: E402


def test_area_mean_of_a_latitude_only_field_is_the_spherical_mean():
    """sin²(lat) has spherical mean 1/3; cos² weights would give 1/4, no weights 1/2."""
    lat = regular_latitudes(180)
    field = np.broadcast_to((np.sin(np.deg2rad(lat)) ** 2)[:, None], (180, 8))
    assert area_mean(field, lat) == pytest.approx(1.0 / 3.0, abs=2e-5)
    assert latitude_weights(lat).mean() == pytest.approx(1.0)
    np.testing.assert_allclose(latitude_weights(lat[::-1]), latitude_weights(lat)[::-1])
    # on a Gaussian grid the cells are bounded midway too: still the spherical mean, to the grid's accuracy
    g = gaussian_latitudes(64)
    assert area_mean(np.broadcast_to((np.sin(np.deg2rad(g)) ** 2)[:, None], (64, 4)), g) == pytest.approx(1 / 3, abs=5e-4)


def test_zonal_means_eddies_and_variance_equal_numpy():
    rng = np.random.default_rng(0)
    u, v, t = (rng.normal(size=(10, 3, 6, 12)) + k for k in range(3))
    expected_zonal = np.array([[np.mean([u[i, k, j].mean() for i in range(10)]) for j in range(6)] for k in range(3)])
    np.testing.assert_allclose(zonal_mean(u), expected_zonal, rtol=1e-12)
    np.testing.assert_allclose(transient_variance(t), np.var(t, axis=0), rtol=1e-12)
    np.testing.assert_allclose(transient_eddy_kinetic_energy(u, v), 0.5 * (u.var(axis=0) + v.var(axis=0)), rtol=1e-12)
    # a steady field has no transient eddies, however strong its standing pattern
    steady = np.broadcast_to(rng.normal(size=(1, 3, 6, 12)) * 50, (10, 3, 6, 12))
    np.testing.assert_allclose(transient_eddy_kinetic_energy(steady, steady), 0.0, atol=1e-20)


def test_trend_equals_polyfit():
    times = np.datetime64("2001-01-01T00:00") + np.arange(0, 365 * 4) * np.timedelta64(6, "h")
    years = (times - times[0]) / np.timedelta64(1, "D") / 365.2425
    series = 250.0 + 0.7 * years + np.random.default_rng(1).normal(0, 0.3, years.size)
    assert trend_per_year(times, series) == pytest.approx(np.polyfit(years, series, 1)[0], rel=1e-10)
    assert trend_per_year(times, series) == pytest.approx(0.7, abs=0.05)


def test_power_spectrum_default_truncation_on_both_grids():
    """The climate spectra run to T21 on 32 rows (T15 on 24), on each field's own grid: a harmonic's power lands
    at its own wavenumber on Gaussian and on regular rows alike (the transform is tested in tests/regrid)."""
    lon = 360.0 * np.arange(64) / 64
    for lat in (gaussian_latitudes(32), regular_latitudes(32)):
        spectrum = power_spectrum(real_harmonic(7, 3, lat, lon), lat)
        assert spectrum.shape == (22,)
        assert spectrum[7] * 4 * np.pi == pytest.approx(1.0, rel=1e-9)
        assert np.delete(spectrum, 7).max() * 4 * np.pi < 1e-12
    assert power_spectrum(np.zeros((24, 48)), gaussian_latitudes(24)).shape == (16,)


def _write_run(path, times, lat, lon, levels, data: dict) -> None:
    ds = xr.Dataset({k: (("time", "level", "lat", "lon"), v.astype(np.float32)) for k, v in data.items()},
                    coords={"time": times, "level": levels, "lat": lat, "lon": lon})
    ds.to_zarr(path, consolidated=False)


def test_compare_a_perfect_run_and_a_coarsened_one(tiny_store, tmp_path):
    """A 'run' that is the truth scores zero error and ratios of one; the truth conservatively coarsened to the
    classical model's T15 Gaussian grid (the coarse-model run) loses eddy variance and small-scale power."""
    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

    store = open_store(tiny_store)
    levels = [250.0, 500.0, 700.0, 850.0]
    index = np.arange(8, store.times.size)  # from day 2: some eddies have grown
    fields = {f: store.read(f, time=index, levels=levels).astype(np.float64) for f in climate.FIELDS}
    lat, lon = store.latitudes, store.longitudes
    short = index.size - 4  # the hybrid ran shorter than the coarse model alone: the coarse run is cut to it
    _write_run(tmp_path / "hybrid" / "atmorep.zarr", store.times[index[:short]], lat, lon, levels,
               {f: v[:short] for f, v in fields.items()})
    gaussian = GaussianGrid(24, 48, lat_order="descending")
    down = Regridder(LatLonGrid.from_centers(lat, lon), gaussian, "conservative_normed", progress=False)
    coarse = {f: down.apply(v) for f, v in fields.items()}
    _write_run(tmp_path / "coarse" / "classical.zarr", store.times[index], gaussian.lat[:, 0] if gaussian.lat.ndim == 2
               else gaussian.lat, np.arange(48) * 7.5, levels, coarse)
    summary = climate.compare(tmp_path / "hybrid", tiny_store, tmp_path / "out", coarse_dir=tmp_path / "coarse")
    hybrid, alone = summary["runs"]["hybrid"], summary["runs"]["coarse model alone"]
    for f in ("temperature", "u_component_of_wind"):
        assert hybrid["zonal_mean_rmse"][f] < 1e-4 < alone["zonal_mean_rmse"][f]
    np.testing.assert_allclose(hybrid["eddy_ratio_to_truth"]["eddy_kinetic_energy"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(hybrid["spectrum_ratio_to_truth"]["temperature"], 1.0, rtol=1e-4)
    np.testing.assert_allclose(hybrid["trend_minus_truth_K_per_year"], 0.0, atol=1e-6)
    assert max(alone["eddy_ratio_to_truth"]["eddy_kinetic_energy"]) < 1.0
    ratio = np.asarray(alone["spectrum_ratio_to_truth"]["u_component_of_wind"])  # [level, n = 1 .. 15]: T15
    assert ratio.shape == (4, 15)  # cell averaging damps large n (measured: 0.69 at n = 12-15, 0.99 at n = 1-4)
    assert ratio[:, -4:].mean() < 0.8 * ratio[:, :4].mean() and ratio[:, :4].mean() > 0.9
    assert json.loads((tmp_path / "out" / "climate.json").read_text())["times"] == short
    with pytest.raises(DataError, match="do not begin with the run's"):  # a coarse run shorter than the hybrid
        climate.compare(tmp_path / "coarse", tiny_store, tmp_path / "out2", coarse_dir=tmp_path / "hybrid",
                        run_store="classical.zarr", coarse_store="atmorep.zarr")
    for name in ("zonal_mean_temperature", "zonal_mean_u_component_of_wind", "eddy_kinetic_energy",
                 "temperature_variance", "spectra", "global_mean_temperature"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 10_000
