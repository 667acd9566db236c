"""open_store: layouts, URLs, zarr formats, bounded window reads, units, and every bad input."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from atmorep_coupler.data import open_store
from atmorep_coupler.errors import DataError, UnitError


def _url(kind: str, tmp_path, fmt: int) -> tuple[str, str]:
    """(where to write, how to open) for a local path, a file:// URL or a memory:// URL."""
    if kind == "path":
        p = str(tmp_path / f"s{fmt}.zarr")
        return p, p
    if kind == "file":
        p = str(tmp_path / f"s{fmt}.zarr")
        return p, "file://" + p
    p = f"memory://{uuid.uuid4().hex}/s{fmt}.zarr"
    return p, p


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("kind", ["path", "file", "memory"])
def test_round_trip_formats_and_urls(era5, write_store, tmp_path, fmt, kind):
    target, url = _url(kind, tmp_path, fmt)
    write_store(era5, target, zarr_format=fmt)
    store = open_store(url)
    assert store.zarr_format == fmt
    assert set(store.variables) == set(era5.data_vars)
    np.testing.assert_array_equal(store.times, era5.time.values)
    np.testing.assert_array_equal(store.levels, [500, 850, 1000])
    np.testing.assert_array_equal(store.latitudes, era5.latitude.values)
    np.testing.assert_array_equal(store.longitudes, era5.longitude.values)
    for var in era5.data_vars:
        out = store.read(var)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, era5[var].values)
    assert store.has_levels("t") and not store.has_levels("sst")
    assert store.units("z") == "m2 s-2"


def test_window_with_wrapping_longitudes(era5, write_store, tmp_path):
    store = open_store(write_store(era5, tmp_path / "s.zarr"))
    lon = np.array([14, 15, 16, 17])  # wraps across 0/360: storage columns 14, 15, 0, 1
    out = store.read("temperature", time=slice(3, 7), levels=[1000, 500], lat=slice(2, 5), lon=lon)
    ref = era5.temperature.values[3:7][:, [2, 0]][:, :, 2:5][..., [14, 15, 0, 1]]
    np.testing.assert_array_equal(out, ref)
    out = store.read("sst", time=np.array([0, 5, 9]), lat=np.array([7, 0]), lon=np.array([-1, 0]))
    np.testing.assert_array_equal(
        out, era5.sea_surface_temperature.values[[0, 5, 9]][:, [7, 0]][..., [15, 0]]
    )
    np.testing.assert_array_equal(store.read("co2", time=slice(2, 4)), era5.co2_equivalent.values[2:4])


def test_reads_touch_only_the_window(era5, write_store, tmp_path):
    """Corrupt every chunk outside the window: the window still reads, the rest cannot."""
    path = tmp_path / "chunked.zarr"
    write_store(era5, path, chunks={"time": 1, "level": 1})
    chunk_dir = path / "temperature" / "c"
    for tdir in chunk_dir.iterdir():
        if int(tdir.name) not in (4, 5):
            for f in tdir.rglob("*"):
                if f.is_file():
                    f.write_bytes(b"not a zstd chunk")
    store = open_store(path)
    out = store.read("temperature", time=slice(4, 6), levels=[850], lat=slice(0, 3), lon=np.array([15, 0]))
    np.testing.assert_array_equal(out, era5.temperature.values[4:6, [1], 0:3][..., [15, 0]])
    with pytest.raises(Exception):
        store.read("temperature", time=slice(3, 4))


def test_era5_download_conventions_are_canonicalised(era5, write_store, tmp_path):
    """Short names, lat/lon/pressure_level dims, ascending latitude, -180..180 longitude, Pa levels."""
    ds = era5.rename(
        {
            "temperature": "t",
            "sea_surface_temperature": "sst",
            "latitude": "lat",
            "longitude": "lon",
            "level": "pressure_level",
        }
    )
    ds = ds.isel(lat=slice(None, None, -1))
    ds = ds.assign_coords(lon=((ds.lon + 180.0) % 360.0) - 180.0).sortby("lon")
    ds = ds.assign_coords(
        pressure_level=("pressure_level", ds.pressure_level.values * 100.0, {"units": "Pa"})
    )
    ds = ds.transpose("time", "pressure_level", "lon", "lat")
    store = open_store(write_store(ds, tmp_path / "cds.zarr"))
    assert "temperature" in store.variables and "sea_surface_temperature" in store.variables
    np.testing.assert_array_equal(store.levels, [500.0, 850.0, 1000.0])
    np.testing.assert_array_equal(store.latitudes, era5.latitude.values)
    np.testing.assert_array_equal(store.longitudes, era5.longitude.values)
    np.testing.assert_array_equal(store.read("t"), era5.temperature.values)
    lon = np.array([15, 0, 1])
    np.testing.assert_array_equal(
        store.read("sst", lat=slice(1, 4), lon=lon), era5.sea_surface_temperature.values[:, 1:4][..., lon]
    )


def test_unit_conversion(era5, write_store, tmp_path):
    store = open_store(write_store(era5, tmp_path / "s.zarr"))
    t = era5.temperature.values.astype(np.float64)
    np.testing.assert_allclose(store.read("t", units="degC"), t - 273.15, atol=1e-4)
    np.testing.assert_allclose(store.read("z", units="km2 s-2"), era5.geopotential.values * 1e-6, rtol=1e-6)
    np.testing.assert_allclose(store.read("co2", units="1"), era5.co2_equivalent.values * 1e-6, rtol=1e-6)
    with pytest.raises(UnitError, match=r"temperature.*'K'.*'m'"):
        store.read("temperature", units="m")


def test_unknown_unit(era5, write_store, tmp_path):
    era5.temperature.attrs["units"] = "kelvinish"
    path = write_store(era5, tmp_path / "bad_units.zarr")
    store = open_store(path)
    with pytest.raises(UnitError) as err:
        store.read("temperature", units="K")
    assert (
        "bad_units.zarr" in str(err.value)
        and "temperature" in str(err.value)
        and "kelvinish" in str(err.value)
    )


def test_missing_units_attribute(era5, write_store, tmp_path):
    del era5.vorticity.attrs["units"]
    store = open_store(write_store(era5, tmp_path / "s.zarr"))
    with pytest.raises(DataError, match=r"s\.zarr.*'vorticity' has no CF 'units'"):
        store.units("vo")


def test_missing_variable_and_level(era5, write_store, tmp_path):
    store = open_store(write_store(era5, tmp_path / "s.zarr"))
    with pytest.raises(DataError) as err:
        store.read("q")
    msg = str(err.value)
    assert "s.zarr" in msg and "'q'" in msg and "specific_humidity" in msg and "temperature" in msg
    with pytest.raises(DataError) as err:
        store.read("t", levels=[850, 925])
    msg = str(err.value)
    assert "s.zarr" in msg and "'temperature'" in msg and "925" in msg and "850.0" in msg


def test_non_monotonic_time(era5, write_store, tmp_path):
    times = era5.time.values.copy()
    times[[4, 5]] = times[[5, 4]]
    path = write_store(era5.assign_coords(time=times), tmp_path / "shuffled.zarr")
    with pytest.raises(DataError) as err:
        open_store(path)
    msg = str(err.value)
    assert (
        "shuffled.zarr" in msg
        and "time[4]" in msg
        and str(times[4])[:19] in msg
        and "strictly increasing" in msg
    )


def test_duplicate_time_is_rejected(era5, write_store, tmp_path):
    times = era5.time.values.copy()
    times[6] = times[5]
    with pytest.raises(DataError, match="time axis is not strictly increasing"):
        open_store(write_store(era5.assign_coords(time=times), tmp_path / "dup.zarr"))


def test_regional_grid(era5, write_store, tmp_path):
    regional = era5.isel(latitude=slice(1, 4), longitude=slice(2, 9))
    path = write_store(regional, tmp_path / "europe.zarr")
    with pytest.raises(DataError) as err:
        open_store(path)
    msg = str(err.value)
    assert "europe.zarr" in msg and "regional" in msg and "latitude 11.25..56.25" in msg
    store = open_store(path, require_global=False)
    assert not store.is_global
    np.testing.assert_array_equal(store.read("t"), regional.temperature.values)


def test_missing_store_and_bad_index(era5, write_store, tmp_path):
    with pytest.raises(DataError, match="nowhere.zarr.*no such file"):
        open_store(tmp_path / "nowhere.zarr")
    store = open_store(write_store(era5, tmp_path / "s.zarr"))
    with pytest.raises(DataError, match="latitude.*index 8 out of range"):
        store.read("t", lat=np.array([8]))
    with pytest.raises(DataError, match="no time 1999"):
        store.time_index("1999-01-01")
    assert store.time_index(era5.time.values[3]) == 3
