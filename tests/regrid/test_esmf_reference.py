"""Agreement with ESMF 8.8.1: read its weight files, and reproduce its weights natively.

Reference: tests/regrid/data/esmf-weights/ (README.md there lists the cases and how they were made).
"""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest
import scipy.sparse as sp

from atmorep_coupler.regrid import Grid, Regridder, read_weight_file
from atmorep_coupler.regrid.regridder import compute_weights

CASES = {
    "latlon2_to_latlon2.5": ("grid_latlon2.nc", "grid_latlon2.5.nc"),
    "gauss32_to_latlon2.5": ("grid_gauss32.nc", "grid_latlon2.5.nc"),
    "rotpole3_to_latlon2": ("grid_rotpole3.nc", "grid_latlon2.nc"),
    "masked_latlon2_to_latlon2.5": ("grid_latlon2_masked.nc", "grid_latlon2.5.nc"),
}
#: (case, ESMF file suffix, our method)
GENERATED = [
    ("latlon2_to_latlon2.5", "bilinear", "bilinear"),
    ("latlon2_to_latlon2.5", "conserve", "conservative"),
    ("latlon2_to_latlon2.5", "conserve_fracarea", "conservative_normed"),
    ("latlon2_to_latlon2.5", "neareststod", "nearest_s2d"),
    ("gauss32_to_latlon2.5", "bilinear", "bilinear"),
    ("gauss32_to_latlon2.5", "conserve", "conservative"),
    ("rotpole3_to_latlon2", "conserve", "conservative"),
    ("rotpole3_to_latlon2", "bilinear", "bilinear"),
    ("masked_latlon2_to_latlon2.5", "conserve_fracarea", "conservative_normed"),
    ("masked_latlon2_to_latlon2.5", "neareststod", "nearest_s2d"),
]
ALL_FILES = [(case, suffix) for case, suffix, _ in GENERATED] + [("latlon2_to_latlon2.5", "patch")]


def _grids(reference_dir, case):
    src, dst = CASES[case]
    return Grid.from_scrip(reference_dir / src), Grid.from_scrip(reference_dir / dst)


def _result(reference_dir, case, suffix):
    with netCDF4.Dataset(reference_dir / f"{case}_{suffix}_result.nc") as nc:
        nc.set_auto_mask(False)
        return {k: np.asarray(nc[k][:]) for k in ("src_field", "dst_field", "dst_mapped", "frac_b")}


def _esmf_matrix(reference_dir, case, suffix):
    wf = read_weight_file(reference_dir / f"{case}_{suffix}_weights.nc")
    return sp.csr_matrix((wf.S, (wf.row, wf.col)), shape=(wf.n_b, wf.n_a)), wf


@pytest.mark.parametrize("case, suffix", ALL_FILES)
def test_esmf_weight_files_load_and_reproduce_esmf_results(reference_dir, field_f, case, suffix):
    src, dst = _grids(reference_dir, case)
    regridder = Regridder.from_file(reference_dir / f"{case}_{suffix}_weights.nc", src, dst)
    res = _result(reference_dir, case, suffix)
    # The source vector is the README's field at our grid's centres, flattened longitude fastest.
    np.testing.assert_allclose(res["src_field"], field_f(src.center_lat, src.center_lon).ravel(), atol=1e-14)
    mapped = res["dst_mapped"].astype(bool)
    np.testing.assert_array_equal(regridder.weights.mapped, mapped.ravel())
    y = regridder.apply(res["src_field"].reshape(src.shape))
    np.testing.assert_allclose(y[mapped], res["dst_field"][mapped], rtol=0, atol=1e-14)
    assert np.isnan(y[~mapped]).all()  # unmapped cells are NaN by default, never silently 0
    np.testing.assert_array_equal(regridder.weights.frac_b, res["frac_b"].ravel())


def test_netcdf3_weight_file_reads_like_the_netcdf4_copy(reference_dir):
    a = read_weight_file(reference_dir / "gauss32_to_latlon2.5_conserve_weights_netcdf3.nc")
    b = read_weight_file(reference_dir / "gauss32_to_latlon2.5_conserve_weights.nc")
    for name in ("row", "col", "S"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name, values in b.cells.items():
        np.testing.assert_array_equal(a.cells[name], values)
    assert a.method == b.method == "conservative"
    # The reader is independent of scipy's netCDF-3 reader: compare with it as well.
    from scipy.io import netcdf_file

    with netcdf_file(reference_dir / "gauss32_to_latlon2.5_conserve_weights_netcdf3.nc", mmap=False) as nc:
        np.testing.assert_array_equal(a.S, nc.variables["S"][:])
        np.testing.assert_array_equal(a.col + 1, nc.variables["col"][:])


@pytest.mark.parametrize("case, suffix, method", GENERATED)
def test_native_weights_match_esmf(reference_dir, case, suffix, method):
    src, dst = _grids(reference_dir, case)
    ours = compute_weights(src, dst, method)
    esmf, wf = _esmf_matrix(reference_dir, case, suffix)
    diff = abs(ours.matrix - esmf)
    if method == "nearest_s2d":
        r0, c0, _ = ours.triplets()
        np.testing.assert_array_equal(r0, wf.row)
        np.testing.assert_array_equal(c0, wf.col)
    else:
        assert diff.max() <= 1e-12, f"max weight difference {diff.max():.3e}"
    esmf_mapped = np.bincount(wf.row, minlength=dst.size) > 0
    np.testing.assert_array_equal(ours.mapped, esmf_mapped)
    np.testing.assert_allclose(ours.frac_b, wf.cells["frac_b"], rtol=0, atol=1e-12)
    if method.startswith("conservative"):
        np.testing.assert_allclose(ours.area_a, wf.cells["area_a"], rtol=1e-13)
        np.testing.assert_allclose(ours.area_b, wf.cells["area_b"], rtol=1e-13)
        np.testing.assert_allclose(ours.frac_a, wf.cells["frac_a"], rtol=0, atol=1e-12)
    # No masked source cell takes part.
    assert src.mask.ravel()[ours.matrix.indices].all()
    # The result agrees with ESMF's dst_field on the mapped cells.
    res = _result(reference_dir, case, suffix)
    y = Regridder(src, dst, method, weights=ours).apply(res["src_field"].reshape(src.shape))
    mapped = res["dst_mapped"].astype(bool)
    np.testing.assert_array_equal(np.isfinite(y), mapped)
    tol = 0.0 if method == "nearest_s2d" else 1e-11
    np.testing.assert_allclose(y[mapped], res["dst_field"][mapped], rtol=0, atol=tol)


def test_counts_and_conservation_match_the_summary(reference_dir):
    summary = json.loads((reference_dir / "summary.json").read_text())["cases"]
    src, dst = _grids(reference_dir, "masked_latlon2_to_latlon2.5")
    ours = compute_weights(src, dst, "conservative_normed")
    ref = summary["masked_latlon2_to_latlon2.5"]["methods"]["conserve_fracarea"]
    assert ours.matrix.nnz == ref["n_s"]
    assert int((~ours.mapped).sum()) == ref["n_dst_unmapped"] == 1344
    rows = np.asarray(ours.matrix.sum(axis=1)).ravel()[ours.mapped]
    np.testing.assert_allclose(rows, 1.0, rtol=0, atol=1e-15)
    x = _result(reference_dir, "masked_latlon2_to_latlon2.5", "conserve_fracarea")["src_field"]
    y = ours.matrix @ x
    src_total = np.sum(x * ours.area_a * ours.frac_a)
    dst_total = np.sum(y * ours.area_b * ours.frac_b)
    assert abs(dst_total / src_total - 1) < 1e-14
    np.testing.assert_allclose(src_total, ref["src_integral"], rtol=1e-13)

    src, dst = _grids(reference_dir, "rotpole3_to_latlon2")
    ours = compute_weights(src, dst, "conservative")
    ref = summary["rotpole3_to_latlon2"]["methods"]["conserve"]
    assert ours.matrix.nnz == ref["n_s"] and int(ours.mapped.sum()) == ref["n_dst_mapped"]
    partial = ours.mapped & (np.abs(ours.frac_b - 1) > 1e-6)
    assert int(partial.sum()) == ref["n_dst_partial"] == 258
    # DSTAREA rows sum to frac_b.
    np.testing.assert_allclose(np.asarray(ours.matrix.sum(axis=1)).ravel(), ours.frac_b, rtol=0, atol=1e-15)


def test_greatcircle_and_latitude_band_overlaps_differ_as_documented(reference_dir):
    """Exact parallel-bounded overlaps (separable) differ from ESMF by the README's ~7e-4 per weight."""
    src, dst = _grids(reference_dir, "latlon2_to_latlon2.5")
    esmf, _ = _esmf_matrix(reference_dir, "latlon2_to_latlon2.5", "conserve")

    def band_overlap(a_bounds, b_bounds, func):
        lo = np.maximum(a_bounds[None, :, 0], b_bounds[:, None, 0])
        hi = np.minimum(a_bounds[None, :, 1], b_bounds[:, None, 1])
        return np.where(hi > lo, func(hi) - func(lo), 0.0)

    sin = lambda d: np.sin(np.deg2rad(d))  # noqa: E731
    lat = band_overlap(src.lat_bounds, dst.lat_bounds, sin)  # (n_lat_b, n_lat_a)
    lon = band_overlap(src.lon_bounds, dst.lon_bounds, np.deg2rad)
    # Separable overlaps: dst (i, k) x src (j, l) -> lat[i, j] * lon[k, l], i.e. a Kronecker product.
    overlap = sp.kron(sp.csr_matrix(lat), sp.csr_matrix(lon), format="csr")
    exact = sp.diags(1.0 / dst.band_area.ravel()) @ overlap
    assert exact.nnz == 41472 and esmf.nnz == 49536
    assert 5e-4 < abs(exact - esmf).max() < 1e-3
