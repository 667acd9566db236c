"""Fixtures for model, masking and sampler tests: tiny configs and a small analytic ERA5-layout store.

The store's fields are closed-form functions of (time, level, latitude, longitude), so tests can check
what the sampler read against the formula at the coordinates it reports.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.config import from_dict
from atmorep_coupler.data.statistics import compute_normalization
from atmorep_coupler.data.store import open_store
from atmorep_coupler.model.config import ModelConfig

LEVELS = [1000.0, 850.0, 500.0, 250.0]
LAT = 90.0 - 5.625 * (np.arange(32) + 0.5)  # descending, cell centres of a 5.625 degree grid
LON = 5.625 * np.arange(64)



def temperature(hours, level, lat, lon):
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return 200 + 0.08 * level + 30 * np.cos(phi) + 5 * np.cos(phi) * np.sin(lam + 2 * np.pi * hours / 48)


def u_wind(hours, level, lat, lon):
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return 10 * np.cos(2 * phi) + 0.01 * level + 3 * np.sin(2 * lam - 2 * np.pi * hours / 72)


def sst(hours, lat, lon):
    phi = np.deg2rad(lat)
    land = (lon > 30) & (lon < 60) & (np.abs(lat) < 20)
    return np.where(land, np.nan, 280 + 20 * np.cos(phi) + 2 * np.sin(2 * np.pi * hours / (24 * 365)))


def co2(hours):
    return 280 + 0.1 * hours / 24


def write_analytic_store(path, times) -> None:
    """ERA5-layout zarr with the analytic fields above at ``times`` and its normalization group."""
    times = np.asarray(times, dtype="datetime64[ns]")
    hours = (times - np.datetime64("2000-01-01", "ns")) / np.timedelta64(1, "h")
    h = hours[:, None, None, None]
    p = np.array(LEVELS)[None, :, None, None]
    lat, lon = LAT[None, None, :, None], LON[None, None, None, :]
    ds = xr.Dataset(
        {
            "temperature": (("time", "level", "latitude", "longitude"),
                            temperature(h, p, lat, lon).astype(np.float32), {"units": "K"}),
            "u_component_of_wind": (("time", "level", "latitude", "longitude"),
                                    u_wind(h, p, lat, lon).astype(np.float32), {"units": "m s-1"}),
            "sea_surface_temperature": (("time", "latitude", "longitude"),
                                        sst(h[:, 0], lat[0], lon[0]).astype(np.float32), {"units": "K"}),
            "co2_equivalent": (("time",), co2(hours).astype(np.float32), {"units": "ppm"}),
        },
        coords={
            "time": times,
            "level": ("level", LEVELS, {"units": "hPa"}),
            "latitude": ("latitude", LAT, {"units": "degrees_north"}),
            "longitude": ("longitude", LON, {"units": "degrees_east"}),
        },
    )
    ds.to_zarr(path, mode="w", consolidated=False)
    store = open_store(path)
    compute_normalization(store, progress=False).save(store)


@pytest.fixture(scope="session")
def analytic_store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("analytic") / "era5.zarr"
    times = np.datetime64("2000-01-01T00", "ns") + np.arange(96) * np.timedelta64(3, "h")
    write_analytic_store(path, times)
    return path


@pytest.fixture(scope="session")
def analytic_store(analytic_store_path):
    return open_store(analytic_store_path)


def tiny_config_dict(**overrides) -> dict:
    """Two predicted pressure-level fields on a non-square 2x4 token grid, one input-only surface
    field (SST) and the CO2 series; ~0.1 M parameters."""
    config = {
        "fields": [
            {"name": "temperature", "levels": [850, 500], "token_size": [1, 4, 4], "num_tokens": [3, 2, 4],
             "embed_dim": 32, "coupled_fields": ["u_component_of_wind", "sea_surface_temperature"]},
            {"name": "u_component_of_wind", "levels": [850, 500], "token_size": [1, 4, 4],
             "num_tokens": [3, 2, 4], "embed_dim": 32, "coupled_fields": ["temperature", "co2_equivalent"]},
            {"name": "sea_surface_temperature", "token_size": [3, 8, 8], "num_tokens": [1, 1, 2],
             "embed_dim": 16, "predicted": False},
            {"name": "co2_equivalent", "token_size": [1, 8, 16], "num_tokens": [3, 1, 1], "embed_dim": 16,
             "predicted": False},
        ],
        "encoder_layers": 2,
        "decoder_layers": 2,
        "heads": 4,
        "ensemble_size": 4,
        "strategies": [{"kind": "BERT"}],
    }
    config.update(overrides)
    return config


@pytest.fixture
def tiny_config() -> ModelConfig:
    return from_dict(ModelConfig, tiny_config_dict())
