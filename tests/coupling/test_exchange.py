"""Exchanges: time reductions, conservation between different grids, units, masks and vectors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.coupling.build import build_grid
from atmorep_coupler.coupling.reduction import TimeReduction
from atmorep_coupler.coupling.schema import GridSpec
from atmorep_coupler.errors import ConfigError, RegridError
from atmorep_coupler.regrid.grids import GaussianGrid, LatLonGrid

from .conftest import ANALYTIC, open_run, write_config


# ------------------------------------------------------------------------------ time reduction
@pytest.mark.parametrize("kind, reference", [
    ("instant", lambda s: s[-1]),
    ("average", lambda s: s.mean(axis=0)),
    ("accumulate", lambda s: s.sum(axis=0)),
    ("min", lambda s: s.min(axis=0)),
    ("max", lambda s: s.max(axis=0)),
])
def test_time_reduction_matches_numpy_and_survives_a_restart(kind, reference):
    samples = np.random.default_rng(1).normal(size=(7, 3, 4))
    reducer = TimeReduction(kind)
    for sample in samples[:3]:
        reducer.add(sample)
    restored = TimeReduction(kind)
    restored.load_state_dict(reducer.state_dict())  # a restart in the middle of the window
    for r in (reducer, restored):
        for sample in samples[3:]:
            r.add(sample)
    expected = reference(samples)
    a, b = reducer.result(), restored.result()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, expected, rtol=1e-14, atol=0)
    assert reducer.count == 0 and reducer.value is None  # reset for the next window


# ---------------------------------------------------------------------------------- conservation
def conservation_config(method: str, rtol: float = 1e-12) -> dict:
    """Analytic a (6 x 12 regular, 1 h) -> b (Gaussian 8 x 16, 3 h), window averages over 6 h."""
    return {
        "version": 1,
        "run": {"name": "c", "start": "2000-01-01T00:00:00", "end": "2000-01-01T12:00:00"},
        "grids": {"g6": {"type": "regular_latlon", "nlat": 6, "nlon": 12},
                  "g8": {"type": "gaussian", "nlat": 8, "nlon": 16}},
        "components": {
            "a": {"kind": ANALYTIC, "grid": "g6", "timestep": "PT1H", "config": {"amplitude": 40.0}},
            "b": {"kind": ANALYTIC, "grid": "g8", "timestep": "PT3H", "config": {"nlat": 8, "nlon": 16, "gaussian": True}},
        },
        "couplings": [{"from": "a", "to": "b", "fields": [{"src": "signal", "dst": "received"}], "period": "PT6H",
                       "time_reduction": "average", "remap": {"method": method},
                       "conservation": {"check": True, "rtol": rtol}}],
    }


@pytest.mark.parametrize("method", ["conservative", "conservative_normed"])
def test_conservative_exchange_between_grids_conserves_the_area_integral(tmp_path, method):
    with open_run(write_config(tmp_path, conservation_config(method)), out_dir=tmp_path / "out",
                              progress=False) as run:
        run.run()
        received = run.components["b"].get_field("received").values  # the import for the window [6 h, 12 h)
    # Independent reference: the window (6 h, 12 h] average of the analytic field on the source grid.
    src, dst = LatLonGrid(6, 12), GaussianGrid(8, 16)
    pattern = 40.0 * np.cos(np.deg2rad(src.center_lat)) * np.cos(np.deg2rad(src.center_lon))
    window_mean = 280.0 + np.mean(np.arange(7, 13)) + pattern
    source_integral = np.sum(window_mean * src.area)
    destination_integral = np.sum(received * dst.area)
    assert destination_integral == pytest.approx(source_integral, rel=1e-13)
    assert not np.allclose(received, received.mean())  # the pattern was mapped, not smoothed away
    # ... and the diagnostic reported the same integrals for both windows
    with open(tmp_path / "out" / "conservation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["time_seconds"]) for r in rows] == [6 * 3600, 12 * 3600]
    assert float(rows[1]["source_integral"]) == pytest.approx(source_integral, rel=1e-13)
    assert float(rows[1]["destination_integral"]) == pytest.approx(destination_integral, rel=1e-13)
    assert all(float(r["relative_error"]) < 1e-13 for r in rows)
    assert run.max_conservation_error["couplings[0] a->b"] < 1e-13


def test_conservation_check_fails_beyond_rtol(tmp_path):
    path = write_config(tmp_path, conservation_config("conservative", rtol=1e-300))
    with open_run(path, out_dir=tmp_path / "out", progress=False) as run:
        with pytest.raises(RegridError, match=r"couplings\[0\] a->b: field 'signal' at 21600 s: the area integral changed"):
            run.run()


# ----------------------------------------------------------------------------------------- units
def test_unit_conversion_with_offset_in_an_accumulating_exchange(tmp_path):
    """K -> degC is affine: every sample is converted, so the sum of n samples gains n offsets."""
    config = conservation_config("conservative")
    config["components"]["b"]["grid"] = "g6"
    config["components"]["b"]["config"] = {"received_units": "degC"}
    coupling = config["couplings"][0]
    coupling["time_reduction"] = "accumulate"
    del coupling["remap"], coupling["conservation"]
    with open_run(write_config(tmp_path, config), out_dir=tmp_path / "out", progress=False) as run:
        run.run()
        received = run.components["b"].get_field("received")
    assert received.attrs["units"] == "degC"
    grid = LatLonGrid(6, 12)
    pattern = 40.0 * np.cos(np.deg2rad(grid.center_lat)) * np.cos(np.deg2rad(grid.center_lon))
    expected = sum(280.0 + hour + pattern - 273.15 for hour in range(7, 13))
    np.testing.assert_allclose(received.values, expected, rtol=1e-13)


def test_delivered_units_key_converts_through_the_given_units(tmp_path):
    """``units`` names what the destination receives; the component converts it to its own units."""
    config = conservation_config("conservative")
    config["couplings"][0]["fields"][0]["units"] = "degF"
    config["couplings"][0]["time_reduction"] = "instant"
    with open_run(write_config(tmp_path, config), out_dir=tmp_path / "out", progress=False) as run:
        run.run()
        exchange = run.exchanges[0]
        assert exchange.routes[0].units == "degF"
        received = run.components["b"].get_field("received").values
    src, dst = LatLonGrid(6, 12), GaussianGrid(8, 16)
    pattern = 40.0 * np.cos(np.deg2rad(src.center_lat)) * np.cos(np.deg2rad(src.center_lon))
    assert np.sum(received * dst.area) == pytest.approx(np.sum((292.0 + pattern) * src.area), rel=1e-12)


# ------------------------------------------------------------------------- masks and fractions
def write_sst(path, grid: LatLonGrid) -> np.ndarray:
    """Two daily SST records on ``grid`` with NaN over a land box; returns the land mask."""
    lat, lon = grid.lat, grid.lon
    land = (np.abs(lat[:, None] - 20.0) < 30.0) & (np.abs(lon[None, :] - 100.0) < 50.0)
    base = 273.15 + 30.0 * np.cos(np.deg2rad(lat))[:, None] + 0.0 * lon[None, :]
    values = np.stack([base, base + 2.0])
    values[:, land] = np.nan
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), values.astype(np.float64), {"units": "K", "standard_name": "sea_surface_temperature"})},
        coords={"time": ("time", [0, 1], {"units": "days since 2000-01-01", "calendar": "noleap"}),
                "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})},
    )
    ds.to_zarr(path, mode="w", consolidated=True, zarr_format=2)
    return land


def sst_config(sst_path, remap: dict, fields=None) -> dict:
    return {
        "version": 1,
        "run": {"name": "sst", "start": "2000-01-01T00:00:00", "end": "2000-01-01T12:00:00", "calendar": "noleap"},
        "grids": {"sst10": {"type": "regular_latlon", "nlat": 18, "nlon": 36},
                  "t8": {"type": "gaussian", "nlat": 8, "nlon": 16}},
        "components": {
            "sst": {"kind": "prescribed", "grid": "sst10", "timestep": "PT6H",
                    "config": {"path": str(sst_path), "variable": "sst"}},
            "sink": {"kind": "receiver", "grid": "t8", "timestep": "PT6H",
                     "config": {"grid": {"type": "gaussian", "nlat": 8, "nlon": 16},
                                "fields": [{"name": "sst", "units": "degC"}]}},
        },
        "couplings": [{"from": "sst", "to": "sink", "fields": fields or [{"src": "sst", "dst": "sst"}], "period": "PT6H",
                       "time_reduction": "average", "remap": remap, "conservation": {"check": True, "rtol": 1e-12}}],
    }


def test_masked_source_with_fallback_and_fraction_weighting(tmp_path):
    """A prescribed SST (NaN on land) mapped conservatively with its mask conserves the ocean integral;
    the fraction-weighted route (its 0/1 mask exported as a dynamic fraction) gives the same field."""
    grid = LatLonGrid(18, 36)
    land = write_sst(tmp_path / "sst.zarr", grid)
    results, frac_b = {}, None
    for name, remap in {
        "masked": {"method": "conservative_normed", "fallback": ["nearest_s2d"]},
        "fraction": {"method": "conservative_normed", "fraction": "sst_mask", "fallback": ["nearest_s2d"]},
    }.items():
        with open_run(write_config(tmp_path / name, sst_config(tmp_path / "sst.zarr", remap)),
                                  out_dir=tmp_path / name / "out", progress=False) as run:
            run.run()
            results[name] = run.components["sink"].get_field("sst").values
            assert run.max_conservation_error["couplings[0] sst->sink"] < 1e-12
            if name == "masked":
                primary = run.regridders.get("", run.config.couplings[0], ("sst10", grid.with_mask(~land)),
                                             ("t8", GaussianGrid(8, 16)), fallback=False)
                frac_b = primary.weights.frac_b.reshape(8, 16)
    assert np.all(np.isfinite(results["masked"]))  # the fallback filled the cells under the land box
    assert np.any(frac_b == 0)  # ... and there were such cells
    np.testing.assert_allclose(results["fraction"], results["masked"], rtol=1e-12)
    # Window (6 h, 12 h] has one SST sample (its time step is 6 h): 2 K/day -> +1 K at 12 h, in degC.
    ocean = 30.0 * np.cos(np.deg2rad(grid.center_lat)) + 1.0
    source_integral = np.sum(np.where(land, 0.0, ocean) * grid.area)
    destination_integral = np.sum(results["masked"] * GaussianGrid(8, 16).area * frac_b)
    assert destination_integral == pytest.approx(source_integral, rel=1e-12)


# ----------------------------------------------------------------------------------------- vectors
def test_vector_pair_maps_through_cartesian_components(tmp_path):
    config = conservation_config("bilinear")
    coupling = config["couplings"][0]
    coupling.update(fields=[{"src": ["u", "v"], "dst": ["u_received", "v_received"]}], time_reduction="instant")
    del coupling["conservation"]
    with open_run(write_config(tmp_path, config), out_dir=tmp_path / "out", progress=False) as run:
        run.run()
        u = run.components["b"].get_field("u_received").values
        v = run.components["b"].get_field("v_received").values
    lat = GaussianGrid(8, 16).center_lat
    # Solid-body rotation u = 20 cos(lat), v = 0. Averaging vectors 30 degrees apart in Cartesian
    # space shortens them by up to cos(15 deg) per direction (20 cos^2(15 deg) = 18.66 at the equator).
    np.testing.assert_allclose(u, 20.0 * np.cos(np.deg2rad(lat)), atol=1.5)
    np.testing.assert_allclose(v, 0.0, atol=1e-9)
    assert np.all(np.diff(u[:4, 0]) > 0)  # increases toward the equator


# ------------------------------------------------------------------ ESMF weight files and grid masks
ESMF = Path("/work/shared/reference/esmf-weights")


def esmf_config(lat_order: str) -> dict:
    """A Gaussian T21 analytic source -> a 2.5-degree receiver, with ESMF_RegridWeightGen's weights."""
    return {
        "version": 1,
        "run": {"name": "e", "start": "2000-01-01T00:00:00", "end": "2000-01-01T12:00:00"},
        "grids": {"gauss32": {"type": "gaussian", "nlat": 32, "nlon": 64, "lat_order": lat_order},
                  "ll25": {"type": "regular_latlon", "nlat": 72, "nlon": 144, "lat_order": lat_order}},
        "components": {
            "a": {"kind": ANALYTIC, "grid": "gauss32", "timestep": "PT1H",
                  "config": {"nlat": 32, "nlon": 64, "gaussian": True, "lat_order": lat_order}},
            "sink": {"kind": "receiver", "grid": "ll25", "timestep": "PT6H",
                     "config": {"grid": {"type": "regular_latlon", "nlat": 72, "nlon": 144, "lat_order": lat_order},
                                "fields": [{"name": "t", "units": "K"}]}},
        },
        "couplings": [{"from": "a", "to": "sink", "fields": [{"src": "signal", "dst": "t"}], "period": "PT6H",
                       "time_reduction": "average",
                       "remap": {"method": "conservative", "weights": str(ESMF / "gauss32_to_latlon2.5_conserve_weights.nc")},
                       "conservation": {"check": True, "rtol": 1e-12}}],
    }


@pytest.mark.skipif(not ESMF.is_dir(), reason="ESMF reference files not available")
def test_esmf_weight_file_drives_a_conservative_exchange(tmp_path):
    with open_run(write_config(tmp_path, esmf_config("ascending")), out_dir=tmp_path / "out",
                              progress=False) as run:
        run.run()
        received = run.components["sink"].get_field("t").values
    with xr.open_dataset(ESMF / "gauss32_to_latlon2.5_conserve_weights.nc") as w:
        area_a, frac_a, area_b = (w[k].values for k in ("area_a", "frac_a", "area_b"))
    src = GaussianGrid(32, 64, lat_order="ascending")
    pattern = 10.0 * np.cos(np.deg2rad(src.center_lat)) * np.cos(np.deg2rad(src.center_lon))
    window_mean = (280.0 + 9.5 + pattern).ravel()  # samples after the steps at 7 ... 12 h
    assert np.sum(received.ravel() * area_b) == pytest.approx(np.sum(window_mean * area_a * frac_a), rel=1e-13)
    assert run.max_conservation_error["couplings[0] a->sink"] < 1e-13


@pytest.mark.skipif(not ESMF.is_dir(), reason="ESMF reference files not available")
def test_esmf_weight_file_with_the_other_latitude_order_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"couplings\[0\]\.remap\.weights: .*centres differ.*check the latitude order"):
        open_run(write_config(tmp_path, esmf_config("descending")), out_dir=tmp_path / "out", progress=False)


def test_configured_grid_mask_excludes_source_cells(tmp_path):
    """grids.<id>.mask (a netCDF variable, non-zero = active) removes cells from the source integral."""
    grid = LatLonGrid(6, 12)
    active = np.ones(grid.shape, dtype=np.int8)
    active[:, :4] = 0
    xr.Dataset({"ocean": (("lat", "lon"), active)}, coords={"lat": grid.lat, "lon": grid.lon}).to_netcdf(tmp_path / "m.nc")
    config = conservation_config("conservative_normed")
    config["grids"]["g6"]["mask"] = {"file": "m.nc", "variable": "ocean"}
    config["couplings"][0]["remap"]["fallback"] = ["nearest_s2d"]  # destination cells under the masked band
    with open_run(write_config(tmp_path, config), out_dir=tmp_path / "out", progress=False) as run:
        run.run()
    pattern = 40.0 * np.cos(np.deg2rad(grid.center_lat)) * np.cos(np.deg2rad(grid.center_lon))
    window_mean = 280.0 + 9.5 + pattern
    with open(tmp_path / "out" / "conservation.csv") as fh:
        last = list(csv.DictReader(fh))[-1]
    assert float(last["source_integral"]) == pytest.approx(np.sum(np.where(active, window_mean, 0.0) * grid.area), rel=1e-13)
    assert float(last["relative_error"]) < 1e-13

    flipped = xr.Dataset({"ocean": (("lat", "lon"), active)}, coords={"lat": grid.lat[::-1], "lon": grid.lon})
    flipped.to_netcdf(tmp_path / "m.nc")
    with pytest.raises(ConfigError, match=r"grids\.g6\.mask: the latitudes of 'ocean' .* differ from the grid's"):
        open_run(write_config(tmp_path, config), out_dir=tmp_path / "out2", progress=False)


@pytest.mark.skipif(not ESMF.is_dir(), reason="ESMF reference files not available")
def test_curvilinear_grid_from_a_scrip_file():
    grid = build_grid("rot", GridSpec(type="curvilinear", file=ESMF / "grid_rotpole3.nc"))
    with xr.open_dataset(ESMF / "grid_rotpole3.nc") as ds:
        nx, ny = (int(v) for v in ds["grid_dims"].values)
        np.testing.assert_allclose(grid.center_lat.ravel(), ds["grid_center_lat"].values)
    assert grid.shape == (ny, nx) == (20, 30)
