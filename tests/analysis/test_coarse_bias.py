"""The coarse model's monthly zonal-mean error (analysis/coarse_bias.py) against numpy on known offsets."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.analysis.coarse_bias import coarse_bias, main, monthly_mean
from atmorep_coupler.data import open_store
from atmorep_coupler.errors import DataError


def test_monthly_mean_equals_a_loop_over_months():
    times = np.datetime64("2000-01-20") + np.arange(0, 70 * 4) * np.timedelta64(6, "h")  # Jan 20 .. Mar 29
    values = np.random.default_rng(0).normal(size=(times.size, 3, 5))
    out = monthly_mean(values, times)
    month = times.astype("datetime64[M]").astype(int) % 12
    for m in range(12):
        if (month == m).any():
            np.testing.assert_allclose(out[m], values[month == m].mean(0), rtol=1e-12)
        else:
            assert np.isnan(out[m]).all()


def test_an_offset_run_has_that_offset_as_its_bias(tiny_store, tmp_path):
    """A 'coarse run' that is the truth plus 1.5 K in temperature (and the truth elsewhere) on the truth's grid."""
    store = open_store(tiny_store)
    levels = [250.0, 500.0, 700.0, 850.0]
    fields = ("temperature", "u_component_of_wind")
    data = {f: store.read(f, levels=levels).astype(np.float32) for f in fields}
    data["temperature"] = data["temperature"] + np.float32(1.5)
    xr.Dataset({f: (("time", "level", "lat", "lon"), v) for f, v in data.items()},
               coords={"time": store.times, "level": levels, "lat": store.latitudes, "lon": store.longitudes}
               ).to_zarr(tmp_path / "classical.zarr", consolidated=False)
    bias = coarse_bias(tmp_path, tiny_store, fields=fields, skip_days=1.0, whole_year=False)
    assert bias["temperature"].dims == ("month", "level", "latitude")
    january = bias["temperature"].sel(month=1).values
    np.testing.assert_allclose(january, 1.5, atol=2e-5)  # float32 values near 250 K
    np.testing.assert_allclose(bias["u_component_of_wind"].sel(month=1).values, 0.0, atol=1e-6)
    assert np.isnan(bias["temperature"].sel(month=7).values).all()
    with pytest.raises(DataError, match=r"no times in calendar months \[2, 3"):
        coarse_bias(tmp_path, tiny_store, fields=fields, skip_days=1.0)
    assert main(["--coarse", str(tmp_path), "--truth", str(tiny_store), "--out", str(tmp_path / "b.zarr")]) == 2
