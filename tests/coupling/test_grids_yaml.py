"""Grids of the ERA5 layouts written in a coupling YAML (no hand-made files): points on the poles,
the first column on 0°, either latitude order, Gaussian; and the message that says how to describe a
component's grid when the YAML's differs."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.coupling.build import build_grid, check_component_grid, grid_spec_of
from atmorep_coupler.coupling.schema import GridSpec
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.regrid.grids import GaussianGrid, LatLonGrid


def era5_axes(spacing: float, poles: bool, descending: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes as ARCO-ERA5 (poles, 90 -> -90) and WeatherBench 2 (ascending) store them."""
    lat = np.linspace(-90.0, 90.0, round(180 / spacing) + 1) if poles else np.arange(-90 + spacing / 2, 90, spacing)
    return (lat[::-1] if descending else lat), np.arange(0.0, 360.0, spacing)


@pytest.mark.parametrize("spacing, poles, order", [(1.5, True, "ascending"), (5.625, False, "ascending"),
                                                   (0.25 * 16, True, "descending")])
def test_era5_layouts_as_regular_latlon(spacing, poles, order):
    lat, lon = era5_axes(spacing, poles, descending=order == "descending")
    spec = GridSpec("regular_latlon", lat.size, lon.size, order, poles=poles, first_lon=0.0)
    grid = build_grid("era5", spec)
    np.testing.assert_allclose(grid.center_lat[:, 0], lat, atol=1e-12)
    np.testing.assert_allclose(grid.center_lon[0], lon, atol=1e-12)
    assert grid.is_global and grid.area.sum() == pytest.approx(4 * np.pi, rel=1e-12)
    if poles:  # half cells at the poles: the band from the pole to half a spacing away
        band = 2 * np.pi * (1 - np.cos(np.deg2rad(spacing / 2)))
        assert grid.band_area[0].sum() == pytest.approx(band, rel=1e-12)
    # what the component sees of such a store (north first) is described by the same keys, descending
    component = LatLonGrid.from_centers(np.sort(lat)[::-1], lon)
    assert grid_spec_of(component) == {"type": "regular_latlon", "nlat": lat.size, "nlon": lon.size,
                                       "lat_order": "descending", "poles": poles, "first_lon": 0.0}


def test_default_cells_still_start_at_zero_and_gaussian_is_recognised():
    plain = build_grid("g", GridSpec("regular_latlon", 18, 36))
    np.testing.assert_array_equal(plain.center_lon[0, :2], [5.0, 15.0])
    assert grid_spec_of(GaussianGrid(24, 48)) == {"type": "gaussian", "nlat": 24, "nlon": 48, "lat_order": "descending"}


def test_mismatch_says_what_to_write():
    lat, lon = era5_axes(1.5, poles=True, descending=True)
    component = LatLonGrid.from_centers(lat, lon)  # a WeatherBench 2 store as the AtmoRep component sees it
    yaml_grid = build_grid("atm", GridSpec("regular_latlon", 121, 240, "ascending", poles=True, first_lon=0.0))
    with pytest.raises(ConfigError, match=r"components.atmorep.grid: the cell centres of component 'atmorep' differ "
                                          r"from grid 'atm'; first at \(j, i\) = \(0, 0\): component \(90.000000, "
                                          r"0.000000\), grid \(-90.000000, 0.000000\) .*; the component's grid is "
                                          r"\{type: regular_latlon, nlat: 121, nlon: 240, lat_order: descending, "
                                          r"poles: true, first_lon: 0.0\}$"):
        check_component_grid("atmorep", "atm", yaml_grid, component)
    check_component_grid("atmorep", "atm", build_grid("atm", GridSpec(**grid_spec_of(component))), component)


def test_a_component_with_two_grids_names_both():
    """A component with fields on a model grid and a finer one (the AtmoRep component's downscaled fields):
    each of its grids is matched to the configured one with its cells; unlisted or unused grids are refused."""
    from types import SimpleNamespace

    from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid
    from atmorep_coupler.coupling.build import component_grid_names

    spec = {"coarse": GridSpec("regular_latlon", 32, 64, "descending", first_lon=0.0),
            "fine": GridSpec("regular_latlon", 64, 128, "descending", first_lon=0.0)}
    grids = {name: build_grid(name, s) for name, s in spec.items()}
    component = {0: ComponentGrid(grids["coarse"], levels=(500.0,)), 1: ComponentGrid(grids["coarse"]),
                 2: SCALAR_GRID, 3: ComponentGrid(grids["fine"], levels=(500.0,))}
    both = SimpleNamespace(grid="coarse", extra_grids=("fine",))
    assert component_grid_names("atmorep", both, grids, component) == {0: "coarse", 1: "coarse", 3: "fine"}
    with pytest.raises(ConfigError, match=r"components.atmorep: its grid 3 \(\(64, 128\)\) is none of \['coarse'\]: "
                                          r".*list each grid of the component in components.atmorep.grid or .extra_grids"):
        component_grid_names("atmorep", SimpleNamespace(grid="coarse", extra_grids=()), grids, component)
    with pytest.raises(ConfigError, match=r"components.atmorep.extra_grids\[0\]: component 'atmorep' has no field on "
                                          r"grid 'fine'"):
        component_grid_names("atmorep", both, grids, {k: v for k, v in component.items() if k != 3})
