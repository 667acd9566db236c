"""The day-of-year climatology against a direct numpy selection of the store's values."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.data import open_store
from atmorep_coupler.errors import DataError
from atmorep_coupler.verification import Climatology


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """120 days from 1 Dec 1999, 6-hourly, 4 x 8 grid, one level; values = index + hour + noise."""
    times = np.datetime64("1999-12-01", "ns") + np.arange(480) * np.timedelta64(6, "h")
    rng = np.random.default_rng(0)
    hours = (times - times.astype("datetime64[D]")) / np.timedelta64(1, "h")
    t = np.arange(times.size)[:, None, None, None] * 0.01 + hours[:, None, None, None] + rng.normal(size=(480, 1, 4, 8))
    ds = xr.Dataset({"temperature": (("time", "level", "latitude", "longitude"), t.astype("f4"), {"units": "K"})},
                    coords={"time": times, "level": ("level", [500.0], {"units": "hPa"}),
                            "latitude": ("latitude", [67.5, 22.5, -22.5, -67.5], {"units": "degrees_north"}),
                            "longitude": ("longitude", np.arange(8) * 45.0, {"units": "degrees_east"})})
    path = tmp_path_factory.mktemp("clim") / "s.zarr"
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return open_store(path, require_global=False), ds


def test_values_are_windowed_means_by_hour_of_day(store):
    s, ds = store
    period = (np.datetime64("1999-12-01"), np.datetime64("2000-02-29T18:00"))
    clim = Climatology(s, period, window_days=11)
    targets = np.array(["2000-01-10T06:00", "2000-03-03T12:00", "1999-12-31T18:00"], dtype="datetime64[ns]")
    got = clim.values("temperature", [500.0], targets)
    times = ds.time.values
    inside = (times >= period[0]) & (times <= period[1])
    for k, target in enumerate(targets):
        day = lambda t: (t - t.astype("datetime64[Y]")) / np.timedelta64(1, "D")  # noqa: E731
        distance = np.abs((day(times) - day(target) + 365.25 / 2) % 365.25 - 365.25 / 2)
        same_hour = (times - times.astype("datetime64[D]")) == (target - target.astype("datetime64[D]"))
        chosen = inside & (distance <= 5.5) & same_hour
        assert chosen.sum() >= 3  # at the end of the period the window is cut
        np.testing.assert_allclose(got[k], ds.temperature.values[chosen].mean(axis=0), rtol=1e-6)
    # the 31 Dec window reaches across the year boundary, into January
    assert (ds.time.values[inside & same_hour & (distance <= 5.5)] > np.datetime64("2000-01-01")).any()


def test_a_time_outside_the_period_coverage_is_an_error(store):
    s, _ = store
    clim = Climatology(s, (np.datetime64("1999-12-01"), np.datetime64("1999-12-31")), window_days=11)
    with pytest.raises(DataError, match=r"no data within 5.5 days of day 60.0 of the year at 0 h \(needed for 2000-03-01"):
        clim.values("temperature", [500.0], np.array(["2000-03-01T00:00"], dtype="datetime64[ns]"))
