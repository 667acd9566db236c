"""Weight files in ESMF, SCRIP (CDO, OASIS) and xESMF layouts: round trips, detection, bad files."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder, read_weight_file
from atmorep_coupler.regrid.weightfile import LAYOUTS

SRC = LatLonGrid(36, 72)  # 5 degrees, north first
DST = GaussianGrid(24, lat_order="ascending")
MASK = np.ones(SRC.shape, bool)
MASK[10:15, 20:30] = False
_regridders: dict = {}


def regridder(method: str) -> Regridder:
    if method not in _regridders:
        fallback = ("nearest_s2d",) if method == "conservative_normed" else ()
        _regridders[method] = Regridder(SRC.with_mask(MASK), DST, method, fallback=fallback, progress=False)
    return _regridders[method]


def field(seed=0, batch=()):
    return np.random.default_rng(seed).standard_normal((*batch, *SRC.shape))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method", ["conservative", "conservative_normed", "bilinear", "nearest_d2s"])
def test_each_layout_round_trips_the_operator(tmp_path, layout, method):
    r = regridder(method)
    path = r.to_file(tmp_path / "w.nc", layout=layout)
    wf = read_weight_file(path)
    assert wf.layout == layout and wf.method == method
    row, col, S = r.weights.triplets()
    np.testing.assert_array_equal(wf.row, row)
    np.testing.assert_array_equal(wf.col, col)
    np.testing.assert_array_equal(wf.S, S)
    back = Regridder.from_file(path, SRC.with_mask(MASK), DST)
    assert (abs(back.weights.matrix - r.weights.matrix)).nnz == 0
    np.testing.assert_array_equal(back.weights.mapped, r.weights.mapped)
    x = np.where(MASK, field(batch=(2,)), 0.0)
    np.testing.assert_array_equal(back.apply(x), r.apply(x))
    if layout == "xesmf":
        with netCDF4.Dataset(path) as nc:
            assert set(nc.variables) == {"S", "row", "col"}
        return
    # ESMF and SCRIP files carry the per-cell metadata; SCRIP stores angles in radians.
    np.testing.assert_array_equal(back.weights.frac_a, r.weights.frac_a)
    np.testing.assert_array_equal(back.weights.frac_b, r.weights.frac_b)
    np.testing.assert_array_equal(wf.cells["area_a"], SRC.area.ravel())
    np.testing.assert_array_equal(wf.cells["mask_a"], MASK.ravel())
    np.testing.assert_allclose(wf.cells["yc_b"], DST.center_lat.ravel(), rtol=0, atol=1e-12)
    assert list(wf.src_grid_dims) == [72, 36] and wf.n_a == SRC.size and wf.n_b == DST.size


def test_esmf_file_in_netcdf3_as_esmf_writes_it(tmp_path):
    path = regridder("bilinear").to_file(tmp_path / "w.nc", format="NETCDF3_64BIT_OFFSET")
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF3_64BIT_OFFSET" and nc.conventions == "NCAR-CSM"
        assert nc["yv_a"].shape == (SRC.size, 4) and int(nc["row"][:].min()) == 1  # 1-based
    np.testing.assert_array_equal(read_weight_file(path).S, regridder("bilinear").weights.triplets()[2])


def test_scrip_file_has_the_names_cdo_and_oasis_use(tmp_path):
    path = regridder("conservative_normed").to_file(tmp_path / "rmp.nc", layout="scrip", format="NETCDF3_64BIT_OFFSET")
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF3_64BIT_OFFSET"
        assert nc.conventions == "SCRIP" and nc.normalization == "fracarea"
        assert nc.map_method == "Conservative remapping"
        assert {d: len(v) for d, v in nc.dimensions.items()} == {
            "src_grid_size": SRC.size,
            "dst_grid_size": DST.size,
            "num_links": regridder("conservative_normed").weights.matrix.nnz,
            "src_grid_corners": 4,
            "dst_grid_corners": 4,
            "num_wgts": 1,
            "src_grid_rank": 2,
            "dst_grid_rank": 2,
        }
        assert nc["remap_matrix"].dimensions == ("num_links", "num_wgts")
        assert nc["src_grid_center_lat"].units == "radians"
        np.testing.assert_allclose(nc["src_grid_corner_lon"][:], np.deg2rad(SRC.corner_lon.reshape(-1, 4)), rtol=1e-15)
        assert int(nc["dst_address"][:].min()) == 1  # 1-based


def _scrip_file(path, S, row, col, *, map_method, normalization, area_b=None, num_wgts=1):
    """A minimal SCRIP file as other tools write it (no corners, no metadata of this package)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("src_grid_size", SRC.size)
        nc.createDimension("dst_grid_size", DST.size)
        nc.createDimension("num_links", len(S))
        nc.createDimension("num_wgts", num_wgts)
        nc.createVariable("src_address", "i4", ("num_links",))[:] = col + 1
        nc.createVariable("dst_address", "i4", ("num_links",))[:] = row + 1
        nc.createVariable("remap_matrix", "f8", ("num_links", "num_wgts"))[:] = np.tile(S[:, None], (1, num_wgts))
        if area_b is not None:
            nc.createVariable("dst_grid_area", "f8", ("dst_grid_size",))[:] = area_b
        nc.setncatts({"map_method": map_method, "normalization": normalization, "conventions": "SCRIP"})


def test_foreign_scrip_files_are_read_by_their_attributes(tmp_path):
    dstarea = Regridder(SRC, DST, "conservative", progress=False).weights
    row, col, S = dstarea.triplets()
    # normalization "none" holds overlap areas (sr): divided by the destination areas, they are DSTAREA.
    _scrip_file(tmp_path / "none.nc", S * DST.area.ravel()[row], row, col,
                map_method="Conservative remapping", normalization="none", area_b=DST.area.ravel())
    wf = read_weight_file(tmp_path / "none.nc")
    assert wf.layout == "scrip" and wf.method == "conservative" and wf.n_b == DST.size
    np.testing.assert_allclose(wf.S, S, rtol=1e-14)
    # Second-order conservative files: the first of the three weights is the first-order one.
    _scrip_file(tmp_path / "second.nc", S, row, col, map_method="Conservative remapping",
                normalization="fracnnei", num_wgts=3)
    wf = read_weight_file(tmp_path / "second.nc")
    assert wf.method == "conservative_normed"
    np.testing.assert_array_equal(wf.S, S)
    _scrip_file(tmp_path / "nn.nc", S, row, col, map_method="Nearest neighbor", normalization="none")
    assert read_weight_file(tmp_path / "nn.nc").method == "nearest_s2d"


def test_xesmf_style_file_with_only_S_row_col_loads(tmp_path):
    r = Regridder(SRC, DST, "conservative", progress=False)
    row, col, S = r.weights.triplets()
    path = tmp_path / "xesmf.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("n_s", len(S))
        nc.createVariable("S", "f8", ("n_s",))[:] = S
        nc.createVariable("col", "i4", ("n_s",))[:] = col + 1
        nc.createVariable("row", "i4", ("n_s",))[:] = row + 1
        nc.regrid_method = "conservative"
    back = Regridder.from_file(path, SRC, DST)
    assert back.method == "conservative"
    np.testing.assert_allclose(back.weights.frac_b, r.weights.frac_b, rtol=0, atol=1e-15)
    x = field()
    np.testing.assert_array_equal(back.apply(x), r.apply(x))


def test_unusable_weight_files_are_refused_with_the_reason(tmp_path):
    row, col, S = regridder("bilinear").weights.triplets()
    _scrip_file(tmp_path / "bicubic.nc", S, row, col, map_method="Bicubic remapping", normalization="none", num_wgts=4)
    with pytest.raises(RegridError, match="4 weights per link .*gradients"):
        read_weight_file(tmp_path / "bicubic.nc")
    _scrip_file(tmp_path / "none.nc", S, row, col, map_method="Conservative remapping", normalization="none")
    with pytest.raises(RegridError, match="normalization 'none' .*needs dst_grid_area"):
        read_weight_file(tmp_path / "none.nc")
    with netCDF4.Dataset(tmp_path / "other.nc", "w") as nc:
        nc.createDimension("n", 3)
        nc.createVariable("weights", "f8", ("n",))[:] = 1.0
    with pytest.raises(RegridError, match="no known layout.*S, row, col.*remap_matrix, src_address, dst_address"):
        read_weight_file(tmp_path / "other.nc")
    with pytest.raises(RegridError, match="unknown weight-file layout 'oasis'"):
        regridder("bilinear").to_file(tmp_path / "w.nc", layout="oasis")


def test_weight_file_that_does_not_fit_the_grids_is_rejected(tmp_path):
    path = Regridder(SRC, DST, "bilinear").to_file(tmp_path / "w.nc", layout="scrip")
    with pytest.raises(RegridError, match="source grid of 2592 cells"):
        Regridder.from_file(path, LatLonGrid(18, 36), DST)
    # Same sizes, other latitude order: the centres tell.
    with pytest.raises(RegridError, match="latitude order"):
        Regridder.from_file(path, LatLonGrid(36, 72, lat_order="ascending"), DST)
    with pytest.raises(RegridError, match="destination"):
        Regridder.from_file(path, SRC, GaussianGrid(24, lat_order="descending"))
    with pytest.raises(RegridError, match="does not exist"):
        Regridder.from_file(tmp_path / "missing.nc", SRC, DST)
