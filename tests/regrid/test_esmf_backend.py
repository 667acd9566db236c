"""ESMF itself against the native weights: the ESMPy backend, xESMF, and ESMF_RegridWeightGen on
grids beyond the vendored references (ERA5 0.25 deg -> 1 deg, N48 -> 1 deg, a masked source).

ESMF and ESMPy are on neither PyPI nor Debian: ``bash scripts/build_esmf.sh`` builds them from
source (``.ci/run`` does when the archive is beside the repository); without them these tests skip.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import netCDF4  # noqa: F401  (before esmpy: see atmorep_coupler.regrid.esmf.import_esmpy)
import numpy as np
import pytest
import scipy.sparse as sp

from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder, read_weight_file
from atmorep_coupler.regrid.regridder import compute_weights

from .conftest import regrid_weight_gen

HOW = "build ESMF and ESMPy with `bash scripts/build_esmf.sh <esmf source archive>` (.ci/run does)"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("esmpy") is None, reason=f"ESMPy is not installed: {HOW}")

METHODS = ["bilinear", "conservative", "conservative_normed", "nearest_s2d", "nearest_d2s"]
#: Global grid pairs without exact nearest-neighbour ties (no centre of one grid lies halfway between
#: two of the other), in both directions; the Gaussian grid's outermost rows (87.2 deg) lie closer
#: to the equator than the 5-degree grid's (87.5 deg), so both pole treatments are exercised.
LATLON = LatLonGrid(36, 72, lon0=1.0)
LAND = (np.abs(LATLON.center_lat - 20) < 16) & (np.abs(LATLON.center_lon - 60) < 33)
PAIRS = {
    "latlon5_to_N12": lambda: (LATLON, GaussianGrid(24)),
    "N12_to_latlon5": lambda: (GaussianGrid(24), LATLON),
    "masked_latlon5_to_N12": lambda: (LATLON.with_mask(~LAND), GaussianGrid(24)),
}
_cache: dict = {}


def pair(name):
    if name not in _cache:
        _cache[name] = PAIRS[name]()
    return _cache[name]


def assert_no_nearest_ties(targets, candidates, mask):
    """The two nearest active candidates of every target differ in distance by more than round-off."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(candidates.reshape(-1, 3)[mask.ravel()]).query(targets.reshape(-1, 3), k=2)
    assert (distance[:, 1] - distance[:, 0]).min() > 1e-9  # chord distances carry ~1e-16 of round-off


#: Weights this small are round-off: where a destination point lies on a source cell edge (ERA5
#: points under every 1-degree centre, N48 meridians under some), each tool leaves its own
#: round-off weights of order 1e-15 on the nodes that should get zero.
ROUND_OFF = 1e-13


def assert_same_operator(ours, theirs, tol):
    """The same pairs carry weights above round-off, and the weights differ by at most ``tol``."""
    a, b = ours.tocsr(), theirs.tocsr()
    assert ((abs(a) > ROUND_OFF) != (abs(b) > ROUND_OFF)).nnz == 0, "different (row, col) pairs"
    diff = abs(a - b).max()
    assert diff <= tol, f"largest weight difference {diff:.2e} > {tol:.0e}"


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("method", METHODS)
def test_esmf_backend_agrees_with_native(name, method):
    src, dst = pair(name)
    if method == "nearest_s2d":
        assert_no_nearest_ties(dst.center_xyz, src.center_xyz, src.mask)
    if method == "nearest_d2s":
        assert_no_nearest_ties(src.center_xyz[src.mask], dst.center_xyz, dst.mask)
    native = compute_weights(src, dst, method)
    esmf = compute_weights(src, dst, method, backend="esmf")
    assert_same_operator(native.matrix, esmf.matrix, 0.0 if method.startswith("nearest") else 1e-12)
    np.testing.assert_array_equal(native.mapped, esmf.mapped)
    if method.startswith("conservative"):
        np.testing.assert_allclose(native.frac_b, esmf.frac_b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(native.frac_a, esmf.frac_a, rtol=0, atol=1e-12)


def test_esmf_backend_in_a_fresh_process_neither_crashes_nor_logs_into_the_working_directory(tmp_path):
    """ESMPy imported before netCDF4 (whose wheel has its own HDF5) segfaulted; ESMF's error log went
    into the working directory; conservative weights with ESMF's pole averaging fail with rc = 6."""
    code = (
        "from atmorep_coupler.regrid import LatLonGrid, Regridder\n"
        "from atmorep_coupler.regrid import esmf\n"
        "print(Regridder(LatLonGrid(36, 72), LatLonGrid(18, 36), 'conservative', backend='esmf').weights.matrix.nnz)\n"
        "esmf.POLE_AVERAGED = ('bilinear', 'conservative')  # the old pole method for every method\n"
        "try:\n"
        "    esmf.esmf_weights(LatLonGrid(36, 72), LatLonGrid(18, 36), 'conservative')\n"
        "except Exception as exc:\n"
        "    print(f'{type(exc).__name__}: {exc}')\n"
        "print(esmf.LOG_DIR)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    nnz, error, log_dir = done.stdout.strip().splitlines()
    assert int(nnz) > 0
    assert error.startswith("RegridError: ESMF could not compute 'conservative' weights")
    assert error.endswith("Only ESMF_POLEMETHOD_NONE polemethod supported for conservative regrid methods")
    assert not list(tmp_path.iterdir()), "ESMF wrote into the working directory"
    assert list(Path(log_dir).glob("*ESMF_LogFile"))


def _xesmf_dataset(grid: LatLonGrid):
    import xarray as xr

    lat_edges = np.append(grid.lat_bounds[:, 0], grid.lat_bounds[-1, 1])
    lon_edges = np.append(grid.lon_bounds[:, 0], grid.lon_bounds[-1, 1])
    return xr.Dataset(
        {"mask": (("lat", "lon"), grid.mask.astype(np.int32))},
        coords={"lat": grid.lat, "lon": grid.lon, "lat_b": lat_edges, "lon_b": lon_edges},
    )


@pytest.mark.parametrize("method", [*METHODS, "patch"])
def test_xesmf_weights_and_files_agree(tmp_path, method):
    xesmf = pytest.importorskip("xesmf", reason=f"xESMF is not installed: {HOW}")
    src, dst = pair("masked_latlon5_to_N12" if method == "conservative_normed" else "latlon5_to_N12")
    regridder = xesmf.Regridder(_xesmf_dataset(src), _xesmf_dataset(dst), method, periodic=True, unmapped_to_nan=False)
    theirs = sp.csr_matrix(regridder.weights.data.tocsr(), copy=True)
    ours = compute_weights(src, dst, method, backend="esmf" if method == "patch" else "native")
    # xESMF gives each destination cell that no active source reaches one NaN weight (so that its
    # output is NaN): exactly the cells left unmapped here.
    nan = np.isnan(theirs.data)
    nan_rows = np.repeat(np.arange(theirs.shape[0]), np.diff(theirs.indptr))[nan]
    np.testing.assert_array_equal(np.sort(nan_rows), np.flatnonzero(~ours.mapped & dst.mask.ravel()) if nan.any() else [])
    theirs.data[nan] = 0.0
    theirs.eliminate_zeros()
    assert_same_operator(ours.matrix, theirs, 0.0 if method.startswith("nearest") else 1e-12)
    # xESMF's weight file (S, row, col only) loads as the same operator, NaN rows unmapped.
    regridder.to_netcdf(tmp_path / "xesmf.nc")
    wf = read_weight_file(tmp_path / "xesmf.nc")
    assert wf.layout == "xesmf"
    loaded = Regridder.from_file(wf.path, src, dst)
    assert_same_operator(loaded.weights.matrix, theirs, 0.0)
    np.testing.assert_array_equal(loaded.weights.mapped, ours.mapped)


#: (name, source, destination, ESMF_RegridWeightGen options, our method)
WEIGHT_GEN_CASES = [
    ("era5_0.25deg_to_1deg", "era5", "1deg", ["-m", "conserve", "--norm_type", "dstarea"], "conservative"),
    ("N48_to_1deg", "N48", "1deg", ["-m", "conserve", "--norm_type", "dstarea"], "conservative"),
    ("N48_to_1deg", "N48", "1deg", ["-m", "bilinear"], "bilinear"),
    ("masked_N48_to_1deg", "N48_masked", "1deg", ["-m", "conserve", "--norm_type", "fracarea", "-i"], "conservative_normed"),
    ("masked_N48_to_1deg", "N48_masked", "1deg", ["-m", "neareststod"], "nearest_s2d"),
]


def _big_grid(name):
    if name not in _cache:
        n48 = GaussianGrid.from_n(48)
        land = (np.abs(n48.center_lat - 15) < 31) & (np.abs(n48.center_lon - 100) < 47) | (n48.center_lat < -70)
        _cache[name] = {
            "era5": lambda: LatLonGrid.from_centers(np.linspace(90, -90, 721), np.arange(1440) * 0.25),
            "1deg": lambda: LatLonGrid(180, 360),
            "N48": lambda: n48,
            "N48_masked": lambda: n48.with_mask(~land),
        }[name]()
    return _cache[name]


@pytest.fixture(scope="module")
def scrip_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scrip")
    written = {}

    def get(name):
        if name not in written:
            _big_grid(name).to_scrip(folder / f"{name}.nc")
            written[name] = folder / f"{name}.nc"
        return written[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, src_name, dst_name, options, method", WEIGHT_GEN_CASES, ids=[f"{c[0]}-{c[-1]}" for c in WEIGHT_GEN_CASES]
)
def test_native_weights_match_esmf_regrid_weight_gen(tmp_path, scrip_files, case, src_name, dst_name, options, method):
    exe = regrid_weight_gen()
    if exe is None:
        pytest.skip(f"ESMF_RegridWeightGen not found: {HOW}")
    src, dst = _big_grid(src_name), _big_grid(dst_name)
    weights = tmp_path / "esmf.nc"
    done = subprocess.run(
        [exe, "-s", str(scrip_files(src_name)), "-d", str(scrip_files(dst_name)), "-w", str(weights), *options],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    esmf = Regridder.from_file(weights, src, dst).weights
    ours = compute_weights(src, dst, method)
    if method == "nearest_s2d":
        assert_no_nearest_ties(dst.center_xyz, src.center_xyz, src.mask)
    tol = {"bilinear": 1e-12, "nearest_s2d": 0.0}.get(method, 2e-12)
    assert_same_operator(ours.matrix, esmf.matrix, tol)
    np.testing.assert_array_equal(ours.mapped, esmf.mapped)
    if method.startswith("conservative"):
        np.testing.assert_allclose(ours.frac_b, esmf.frac_b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours.area_a, esmf.area_a, rtol=1e-12)
