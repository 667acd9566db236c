"""Synthetic ERA5-layout datasets with known values, written as real zarr stores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def era5_dataset(
    *,
    n_times: int = 12,
    hours: int = 6,
    start: str = "2001-01-30",
    seed: int = 0,
    nlat: int = 8,
    nlon: int = 16,
    levels=(500, 850, 1000),
) -> xr.Dataset:
    """A small global dataset in the ARCO-ERA5 layout (latitude descending, longitude 0..360)."""
    rng = np.random.default_rng(seed)
    times = np.datetime64(start, "ns") + np.arange(n_times) * np.timedelta64(hours, "h")
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = np.arange(nlon) * 360.0 / nlon
    shape3 = (n_times, len(levels), nlat, nlon)
    shape2 = (n_times, nlat, nlon)
    return xr.Dataset(
        {
            "temperature": (
                ("time", "level", "latitude", "longitude"),
                rng.normal(260.0, 15.0, shape3).astype("f4"),
                {"units": "K"},
            ),
            "geopotential": (
                ("time", "level", "latitude", "longitude"),
                rng.normal(5e4, 3e3, shape3).astype("f4"),
                {"units": "m2 s-2"},
            ),
            "vorticity": (
                ("time", "level", "latitude", "longitude"),
                rng.normal(0.0, 1e-5, shape3).astype("f4"),
                {"units": "s-1"},
            ),
            "sea_surface_temperature": (
                ("time", "latitude", "longitude"),
                rng.normal(290.0, 3.0, shape2).astype("f4"),
                {"units": "K"},
            ),
            "co2_equivalent": (("time",), np.linspace(280.0, 290.0, n_times).astype("f4"), {"units": "ppm"}),
        },
        coords={
            "time": times,
            "level": ("level", np.asarray(levels), {"units": "hPa"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )


def write(ds: xr.Dataset, path, *, zarr_format: int = 3, chunks: dict | None = None) -> str:
    encoding = None
    if chunks:
        encoding = {
            name: {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds[name].dims)}
            for name in ds.data_vars
        }
    ds.to_zarr(path, mode="w", zarr_format=zarr_format, consolidated=False, encoding=encoding)
    return str(path)


@pytest.fixture
def era5():
    return era5_dataset()


@pytest.fixture
def make_era5():
    """``make_era5(**kwargs) -> xr.Dataset`` (see :func:`era5_dataset`)."""
    return era5_dataset


@pytest.fixture
def write_store():
    """``write_store(ds, path, zarr_format=3, chunks=None) -> str``."""
    return write
