"""Grids: construction from parameters, files and datasets; geometry against independent formulas."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import CurvilinearGrid, GaussianGrid, Grid, LatLonGrid
from atmorep_coupler.regrid.sphere import polygon_area

FOUR_PI = 4 * np.pi


def _rotpole3() -> CurvilinearGrid:
    return CurvilinearGrid.rotated_pole(
        -28.5 + 3 * np.arange(20), -43.5 + 3 * np.arange(30), pole_lat=40.0, pole_lon=-170.0
    )


def _masked_latlon2() -> LatLonGrid:
    g = LatLonGrid(90, 180, lat_order="ascending")
    lat, lon = g.center_lat, g.center_lon
    land = ((lat > -20) & (lat < 50) & (lon > 0) & (lon < 60)) | (lat > 75)
    return g.with_mask(~land)


@pytest.mark.parametrize(
    "make, filename, tol",
    [
        (lambda: LatLonGrid(90, 180, lat_order="ascending"), "grid_latlon2.nc", 0.0),
        (lambda: LatLonGrid(72, 144, lat_order="ascending"), "grid_latlon2.5.nc", 0.0),
        (lambda: GaussianGrid(32, lat_order="ascending", bounds="midpoint"), "grid_gauss32.nc", 1e-12),
        (_rotpole3, "grid_rotpole3.nc", 1e-12),
        (_masked_latlon2, "grid_latlon2_masked.nc", 0.0),
    ],
)
def test_grids_from_formulas_match_the_esmf_grid_files(reference_dir, make, filename, tol):
    grid = make()
    with netCDF4.Dataset(reference_dir / filename) as nc:
        nx, ny = nc["grid_dims"][:]
        assert grid.shape == (ny, nx)
        for ours, name in (
            (grid.center_lat, "grid_center_lat"),
            (grid.center_lon, "grid_center_lon"),
            (grid.corner_lat, "grid_corner_lat"),
            (grid.corner_lon, "grid_corner_lon"),
        ):
            theirs = np.asarray(nc[name][:]).reshape(ours.shape)
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol, err_msg=name)
        np.testing.assert_array_equal(grid.mask.ravel(), nc["grid_imask"][:] == 1)
        exact_area = np.asarray(nc["grid_area"][:]).reshape(grid.shape)
    # Great-circle areas differ from the parallel-bounded areas by at most the README's 1.6e-3.
    assert np.abs(grid.area / exact_area - 1).max() < 1.7e-3
    loaded = Grid.from_scrip(reference_dir / filename)
    np.testing.assert_array_equal(loaded.corner_lat, grid.corner_lat)
    np.testing.assert_array_equal(loaded.mask, grid.mask)


def test_latlon_cell_edges_areas_and_orientation():
    g = LatLonGrid(18, 36)  # 10 degree cells, north first
    assert g.lat[0] == 85.0 and g.lat[-1] == -85.0 and g.lon[0] == 5.0
    assert g.is_global and g.periodic
    np.testing.assert_allclose(g.area.sum(), FOUR_PI, rtol=1e-14)
    assert (g.area > 0).all()  # corners are counter-clockwise seen from outside
    np.testing.assert_array_equal(g.corner_lat[0, 0], [80, 80, 90, 90])
    np.testing.assert_array_equal(g.corner_lon[0, 0], [0, 10, 10, 0])
    # Exact band areas dlon * (sin n - sin s) are larger at the equator than the great-circle ones
    # (the great-circle "parallels" bulge poleward) and sum to 4 pi as well.
    np.testing.assert_allclose(g.band_area.sum(), FOUR_PI, rtol=1e-14)
    asc = LatLonGrid(18, 36, lat_order="ascending")
    np.testing.assert_allclose(asc.area, g.area[::-1], rtol=1e-14)


def test_gaussian_latitudes_and_weight_bounds():
    g = GaussianGrid(48)
    x, w = np.polynomial.legendre.leggauss(48)
    np.testing.assert_allclose(np.sin(np.deg2rad(g.lat)), x[::-1], atol=1e-15)
    assert g.shape == (48, 96) and g.lon[1] == 3.75
    # Band areas between the weight-derived bounds equal the quadrature weights (times 2 pi).
    band = g.band_area.sum(axis=1)
    np.testing.assert_allclose(band, 2 * np.pi * w[::-1], rtol=1e-12)
    np.testing.assert_allclose(g.area.sum(), FOUR_PI, rtol=1e-14)
    mid = GaussianGrid(48, bounds="midpoint")
    assert np.abs(mid.lat_bounds - g.lat_bounds).max() > 0.01  # really different bounds


def test_era5_grid_from_centres_has_half_cells_at_the_poles():
    g = LatLonGrid.from_centers(np.linspace(90, -90, 721), np.arange(1440) * 0.25)
    np.testing.assert_array_equal(g.lat_bounds[0], [90, 89.875])
    np.testing.assert_array_equal(g.lon_bounds[0], [-0.125, 0.125])
    assert g.is_global
    np.testing.assert_allclose(g.area.sum(), FOUR_PI, rtol=1e-13)


def test_rotated_pole_grid_geometry():
    g = _rotpole3()
    assert not g.is_global and not g.periodic
    # Rotation preserves areas: great-circle area of the rotated cell = area of the same cell
    # built at the rotated coordinates with the pole in place (independent of the transform).
    unrotated = LatLonGrid.from_centers(-28.5 + 3 * np.arange(20), -43.5 + 3 * np.arange(30))
    np.testing.assert_allclose(g.area, unrotated.area, rtol=1e-12)
    # README: the rotated origin is at 50N, 10E.
    from atmorep_coupler.regrid.sphere import rotated_to_geographic

    lat, lon = rotated_to_geographic(np.array(0.0), np.array(0.0), 40.0, -170.0)
    np.testing.assert_allclose([lat, lon], [50.0, 10.0], atol=1e-12)


def test_clockwise_corners_are_reordered():
    g = LatLonGrid(6, 12)
    cw = CurvilinearGrid(g.center_lat, g.center_lon, g.corner_lat[..., ::-1], g.corner_lon[..., ::-1])
    assert (cw.area > 0).all()
    np.testing.assert_allclose(cw.area, g.area, rtol=1e-14)
    np.testing.assert_allclose(polygon_area(cw.corner_xyz), g.area, rtol=1e-14)


def test_dataset_and_scrip_round_trips(tmp_path):
    g = _masked_latlon2()
    back = Grid.from_dataset(g.to_dataset())
    assert isinstance(back, LatLonGrid)
    np.testing.assert_array_equal(back.corner_lat, g.corner_lat)
    np.testing.assert_array_equal(back.mask, g.mask)
    rp = _rotpole3()
    back = Grid.from_dataset(rp.to_dataset())
    assert isinstance(back, CurvilinearGrid)
    np.testing.assert_array_equal(back.corner_lon, rp.corner_lon)
    rp.to_scrip(tmp_path / "rp.nc")
    back = Grid.from_scrip(tmp_path / "rp.nc")
    np.testing.assert_array_equal(back.center_lat, rp.center_lat)
    np.testing.assert_allclose(back.area, rp.area, rtol=0, atol=0)


def test_dataset_with_cf_bounds_and_descending_latitudes():
    g = LatLonGrid(36, 72)  # north first
    ds = g.to_dataset().rename({"latitude_bounds": "latitude_bnds", "longitude_bounds": "longitude_bnds"})
    ds["latitude"].attrs["bounds"] = "latitude_bnds"
    ds["longitude"].attrs["bounds"] = "longitude_bnds"
    back = Grid.from_dataset(ds)
    assert back.dims == ("latitude", "longitude")
    np.testing.assert_array_equal(back.corner_lat, g.corner_lat)


def test_bad_grids_raise_clear_errors():
    with pytest.raises(RegridError, match="strictly monotonic"):
        LatLonGrid.from_centers(np.array([10.0, 20.0, 15.0]), np.arange(4) * 90.0)
    with pytest.raises(RegridError, match="longitude centres must be strictly increasing"):
        LatLonGrid.from_centers(np.array([10.0, 20.0]), np.array([0.0, 90.0, 80.0]))
    with pytest.raises(RegridError, match="outside \\[-90, 90\\]"):
        LatLonGrid.from_centers(np.array([80.0, 95.0]), np.array([0.0, 90.0]))
    g = LatLonGrid(4, 8)
    with pytest.raises(RegridError, match="NaN"):
        CurvilinearGrid(g.center_lat * np.nan, g.center_lon, g.corner_lat, g.corner_lon)
    with pytest.raises(RegridError, match="mask shape"):
        g.with_mask(np.ones((3, 8), bool))
    with pytest.raises(RegridError, match="lat_order"):
        LatLonGrid(4, 8, lat_order="north")
