"""Applying weights to numpy, xarray and torch data; bad input; the numpy path stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import CurvilinearGrid, GaussianGrid, LatLonGrid, Regridder

SRC = LatLonGrid(36, 72)  # 5 degrees, north first
DST = GaussianGrid(24, lat_order="ascending")
_regridders: dict = {}


def regridder(method: str) -> Regridder:
    if method not in _regridders:
        _regridders[method] = Regridder(SRC, DST, method)
    return _regridders[method]


def field(shape=(), seed=0):
    return np.random.default_rng(seed).standard_normal((*shape, *SRC.shape))


@pytest.mark.parametrize("method", ["bilinear", "conservative", "nearest_d2s"])
def test_batched_numpy_equals_one_field_at_a_time_and_a_dense_product(method):
    r = regridder(method)
    x = field((2, 3))
    y = r.apply(x)
    assert y.shape == (2, 3, *DST.shape)
    dense = r.weights.matrix.toarray()
    expected = np.einsum("ba,ija->ijb", dense, x.reshape(2, 3, -1)).reshape(y.shape)
    expected[..., ~r.weights.mapped.reshape(DST.shape)] = np.nan
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(r.apply(x[1, 2]), y[1, 2])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["scipy-kernel", "torch-sparse-kernel"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_apply_equals_scipy_apply(dtype, requires_grad):
    r = regridder("conservative")
    x = field((4,))
    y_np = r.apply(x.astype(np.float64 if dtype == torch.float64 else np.float32))
    xt = torch.from_numpy(x).to(dtype).requires_grad_(requires_grad)
    y_t = r.apply(xt)
    assert isinstance(y_t, torch.Tensor) and y_t.dtype == dtype and y_t.shape == (4, *DST.shape)
    tol = 1e-14 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(y_t.detach().numpy(), y_np, rtol=tol, atol=tol)


def test_torch_apply_is_differentiable():
    r = regridder("bilinear")
    x = torch.from_numpy(field((2,))).requires_grad_(True)
    r.apply(x).sum().backward()
    # d(sum W x)/dx = W^T 1 for every batch element.
    expected = np.asarray(r.weights.matrix.sum(axis=0)).reshape(SRC.shape)
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(expected, x.shape), rtol=1e-14, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_apply_stays_on_the_gpu():
    r = regridder("bilinear")
    x = torch.from_numpy(field((2,))).cuda()
    y = r.apply(x)
    assert y.device == x.device
    np.testing.assert_allclose(y.cpu().numpy(), r.apply(x.cpu().numpy()), rtol=1e-12, atol=1e-12)
    u, v = r.apply_vector(x, x)
    assert u.device == x.device
    f, frac = r.apply_fraction_weighted(x, torch.ones(SRC.shape, device="cuda", dtype=x.dtype))
    assert f.device == x.device and frac.device == x.device


def test_torch_vector_and_fraction_weighted_equal_numpy():
    r = regridder("conservative")
    u, v = field((2,), 1), field((2,), 2)
    frac = np.random.default_rng(3).random(SRC.shape)
    un, vn = r.apply_vector(u, v)
    ut, vt = r.apply_vector(torch.from_numpy(u), torch.from_numpy(v))
    np.testing.assert_allclose(ut.numpy(), un, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(vt.numpy(), vn, rtol=1e-13, atol=1e-13)
    yn, fn = r.apply_fraction_weighted(u, frac)
    yt, ft = r.apply_fraction_weighted(torch.from_numpy(u), torch.from_numpy(frac))
    np.testing.assert_allclose(yt.numpy(), yn, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ft.numpy(), fn, rtol=1e-13, atol=1e-13)


def test_xarray_keeps_coordinates_and_attributes():
    r = regridder("bilinear")
    x = field((2,))
    da = xr.DataArray(
        x.transpose(1, 0, 2),  # (lat, time, lon): grid dims need not be last
        dims=("lat", "time", "lon"),
        coords={"time": [10, 20], "lat": SRC.lat, "lon": SRC.lon, "label": ("time", ["a", "b"])},
        attrs={"units": "K", "long_name": "temperature"},
        name="t",
    )
    out = r.apply(da)
    assert out.dims == ("time", "latitude", "longitude") and out.name == "t"
    assert out.attrs == da.attrs
    np.testing.assert_array_equal(out["time"], [10, 20])
    np.testing.assert_array_equal(out["label"], ["a", "b"])
    np.testing.assert_array_equal(out["latitude"], DST.lat)
    np.testing.assert_array_equal(out["longitude"], DST.lon)
    np.testing.assert_array_equal(out.values, r.apply(x))
    ds = xr.Dataset({"t": da, "co2": ("time", [400.0, 410.0])}, attrs={"title": "test"})
    out_ds = r.apply(ds)
    np.testing.assert_array_equal(out_ds["t"].values, out.values)
    np.testing.assert_array_equal(out_ds["co2"].values, [400.0, 410.0])
    assert out_ds.attrs == {"title": "test"}


def test_xarray_with_reversed_latitudes_is_rejected():
    da = xr.DataArray(field(), dims=("lat", "lon"), coords={"lat": SRC.lat[::-1], "lon": SRC.lon}, name="t")
    with pytest.raises(RegridError, match="coordinate 'lat'.*reverse the latitudes"):
        regridder("bilinear").apply(da)
    # Longitudes given in [-180, 180) describe the same points: accepted.
    lon = (SRC.lon + 180) % 360 - 180
    ok = xr.DataArray(field(), dims=("lat", "lon"), coords={"lat": SRC.lat, "lon": lon})
    np.testing.assert_array_equal(regridder("bilinear").apply(ok).values, regridder("bilinear").apply(field()))


def test_xarray_vector_and_curvilinear_destination():
    dst = CurvilinearGrid.rotated_pole(np.arange(-20, 21, 4.0), np.arange(-30, 31, 4.0), pole_lat=40, pole_lon=-170)
    r = Regridder(SRC, dst, "bilinear")
    u = xr.DataArray(field((), 1), dims=("lat", "lon"), name="u", attrs={"units": "m s-1"})
    v = xr.DataArray(field((), 2), dims=("lat", "lon"), name="v", attrs={"units": "m s-1"})
    uo, vo = r.apply_vector(u, v)
    assert uo.dims == ("y", "x") and vo.name == "v" and vo.attrs == v.attrs
    assert uo["latitude"].dims == ("y", "x")
    un, vn = r.apply_vector(u.values, v.values)
    np.testing.assert_array_equal(uo.values, un)
    np.testing.assert_array_equal(vo.values, vn)


def test_bad_input_raises_clear_errors():
    r = regridder("bilinear")
    with pytest.raises(RegridError, match="unknown regridding method 'cubic'"):
        Regridder(SRC, DST, "cubic")
    with pytest.raises(RegridError, match="only available with backend='esmf'"):
        Regridder(SRC, DST, "patch")
    with pytest.raises(RegridError, match="unknown regridding backend"):
        Regridder(SRC, DST, "bilinear", backend="magic")
    with pytest.raises(RegridError, match="fallback entry 0"):
        Regridder(SRC, DST, "bilinear", fallback=(0.0, "nearest_s2d"))
    with pytest.raises(RegridError, match="last two dimensions must be \\(36, 72\\)"):
        r.apply(np.zeros((72, 36)))
    x = field()
    x[3, 4] = np.nan
    with pytest.raises(RegridError, match=r"NaN/inf values in active .* \(j, i\) = \(3, 4\)"):
        r.apply(x)
    with pytest.raises(RegridError, match="NaN"):
        r.apply(torch.from_numpy(x))


def test_nans_in_masked_source_cells_are_fine():
    mask = np.ones(SRC.shape, bool)
    mask[3, 4] = False
    r = Regridder(SRC.with_mask(mask), DST, "conservative_normed")
    x = field()
    clean = r.apply(np.where(mask, x, 0.0))
    x[3, 4] = np.nan
    np.testing.assert_array_equal(r.apply(x), clean)
    np.testing.assert_array_equal(r.apply(torch.from_numpy(x)).numpy(), clean)


def test_numpy_and_torch_input_never_import_xarray():
    """Importing xarray costs 1-2 s; the first apply to a numpy array or tensor must not pay it."""
    code = """
import sys, numpy as np, torch
from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder
r = Regridder(LatLonGrid(18, 36), GaussianGrid(8), "conservative_normed", progress=False)
x = np.ones((18, 36))
r.apply(x); r.apply(torch.ones(2, 18, 36)); r.apply_vector(x, x); r.apply_fraction_weighted(x, x)
print(sorted(m for m in ("xarray", "pandas") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
