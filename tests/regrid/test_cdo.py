"""Interoperability with CDO (Climate Data Operators), an independent regridding tool.

Both directions of SCRIP weight files: CDO's ``remap`` applies this package's files, and this package
loads the files of CDO's ``gencon``. CDO (YAC inside) joins the corners of lat-lon cells along the
parallels, so its conservative weights are the exact latitude-band overlaps of ``edges="parallels"``;
``REMAP_AREA_MIN`` is ``min_fraction``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder, read_weight_file
from atmorep_coupler.regrid.regridder import compute_weights

CDO = shutil.which("cdo")
pytestmark = pytest.mark.skipif(
    CDO is None, reason="CDO is not installed (Debian package cdo: apt-get install cdo; .ci/run installs it)"
)

SRC = LatLonGrid(90, 180)  # 2 degrees
DST = LatLonGrid(72, 144)  # 2.5 degrees
#: Land: a box with edges on neither grid's cell edges (so destination cells are partly covered)
#: and the southern polar cap.
LAND = ((SRC.center_lat > 11) & (SRC.center_lat < 51) & (SRC.center_lon > 21) & (SRC.center_lon < 101)) | (
    SRC.center_lat < -80
)
CASES = {
    "latlon2_to_latlon2.5": lambda: (SRC, DST),
    "gauss32_to_latlon2.5_shifted": lambda: (GaussianGrid(32), LatLonGrid(72, 144, lon0=1.0)),
    "masked_latlon2_to_latlon2.5": lambda: (SRC.with_mask(~LAND), DST),
}


def cdo(*args: str, cwd, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([CDO, "-s", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"cdo {' '.join(args)} failed: {done.stderr}"


def write_field(path, grid: LatLonGrid, values: np.ndarray) -> None:
    """A CF file with the grid's cell bounds (CDO reads them), masked cells missing."""
    lat, lon = grid.dims
    ds = grid.to_dataset()[[f"{lat}_bounds", f"{lon}_bounds"]]
    ds["f"] = (grid.dims, np.where(grid.mask, values, np.nan))
    ds.to_netcdf(path, encoding={"f": {"_FillValue": -9.0e33}})


def read_field(path) -> np.ndarray:
    with xr.open_dataset(path) as ds:
        return ds["f"].values


def smooth_field(grid) -> np.ndarray:
    """2 + sin(2 lat) cos(lon) + cos(lat)^2 cos(2 lon)."""
    lat, lon = np.deg2rad(grid.center_lat), np.deg2rad(grid.center_lon)
    return 2 + np.sin(2 * lat) * np.cos(lon) + np.cos(lat) ** 2 * np.cos(2 * lon)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{case: (src, dst, folder)}`` with ``src.nc`` (the test field) and ``dst.nc`` (the target grid)."""
    out = {}
    for case, make in CASES.items():
        src, dst = make()
        folder = tmp_path_factory.mktemp(case)
        write_field(folder / "src.nc", src, smooth_field(src))
        write_field(folder / "dst.nc", dst, np.zeros(dst.shape))
        out[case] = (src, dst, folder)
    return out


@pytest.mark.parametrize("method", ["conservative_normed", "conservative", "bilinear", "nearest_s2d"])
def test_cdo_remap_applies_our_scrip_files(files, method):
    case = "masked_latlon2_to_latlon2.5" if method == "conservative_normed" else "latlon2_to_latlon2.5"
    src, dst, folder = files[case]
    regridder = Regridder(src, dst, method, progress=False)
    weights = regridder.to_file(folder / f"ours_{method}.nc", layout="scrip")
    cdo(f"remap,dst.nc,{weights.name}", "src.nc", f"cdo_{method}.nc", cwd=folder)
    theirs = read_field(folder / f"cdo_{method}.nc")
    ours = regridder.apply(np.where(src.mask, smooth_field(src), 0.0))
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(ours))
    np.testing.assert_allclose(theirs[~np.isnan(ours)], ours[~np.isnan(ours)], rtol=0, atol=1e-14)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("normalization, method", [("fracarea", "conservative_normed"), ("destarea", "conservative")])
def test_cdo_gencon_files_load_and_equal_latitude_band_weights(files, case, normalization, method):
    src, dst, folder = files[case]
    cdo("gencon,dst.nc", "src.nc", f"gencon_{normalization}.nc", cwd=folder, env={"CDO_REMAP_NORM": normalization})
    wf = read_weight_file(folder / f"gencon_{normalization}.nc")
    assert wf.layout == "scrip" and wf.method == method
    theirs = Regridder.from_file(wf.path, src, dst)
    ours = compute_weights(src, dst, method, edges="parallels")
    # The same overlapping pairs, and the same weights and covered fractions to round-off.
    assert (theirs.weights.matrix.astype(bool) != ours.matrix.astype(bool)).nnz == 0
    assert abs(theirs.weights.matrix - ours.matrix).max() <= 1e-11
    np.testing.assert_allclose(theirs.weights.frac_b, ours.frac_b, rtol=0, atol=1e-11)
    np.testing.assert_allclose(wf.cells["area_b"], ours.area_b, rtol=1e-11)
    # CDO applying its own file and this package applying it give the same field.
    cdo(f"remap,dst.nc,gencon_{normalization}.nc", "src.nc", f"remapped_{normalization}.nc", cwd=folder)
    expected = read_field(folder / f"remapped_{normalization}.nc")
    y = theirs.apply(np.where(src.mask, smooth_field(src), 0.0))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_allclose(y[~np.isnan(y)], expected[~np.isnan(y)], rtol=0, atol=1e-14)


@pytest.mark.parametrize("min_fraction", [0.85, 0.97])
def test_min_fraction_leaves_unmapped_what_cdo_leaves_missing(files, min_fraction):
    src, dst, folder = files["masked_latlon2_to_latlon2.5"]
    cdo("remapcon,dst.nc", "src.nc", "min.nc", cwd=folder, env={"REMAP_AREA_MIN": str(min_fraction)})
    theirs = read_field(folder / "min.nc")
    regridder = Regridder(src, dst, "conservative_normed", edges="parallels", min_fraction=min_fraction, progress=False)
    full = compute_weights(src, dst, "conservative_normed", edges="parallels")
    dropped = full.mapped & ~regridder.weights.mapped
    # The threshold bites: partly covered cells (frac_b 0.8-0.96 along the land box) become missing.
    assert dropped.sum() > 0 and np.all(full.frac_b[dropped] < min_fraction)
    ours = regridder.apply(np.where(src.mask, smooth_field(src), 0.0))
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours[~np.isnan(ours)], theirs[~np.isnan(ours)], rtol=0, atol=1e-13)


def test_gaussian_grid_n48_is_cdos_n48(tmp_path):
    """Gaussian grids are named by latitudes per hemisphere: CDO's n48 has 96 x 192 points, ours too."""
    cdo("-f", "nc", "-const,1,n48", "n48.nc", cwd=tmp_path)
    with xr.open_dataset(tmp_path / "n48.nc") as ds:
        lat, lon = ds["lat"].values, ds["lon"].values
    grid = GaussianGrid.from_n(48)
    assert grid.shape == (96, 192) == (lat.size, lon.size)
    np.testing.assert_allclose(grid.lat, lat, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(grid.lon, lon)
