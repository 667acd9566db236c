"""Real data files and configs for the component tests: an SST time series on a 1° grid with a
land box (netCDF and zarr), a curvilinear (rotated-pole) field, a field on pressure levels, CO2
series (YAML, CSV, netCDF), and the slab-ocean example component from docs/components.md."""

from __future__ import annotations

import datetime as dt
import re
import sys
import types
from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr
import yaml

from atmorep_coupler.regrid.grids import CurvilinearGrid

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "components.md"

SST_CALENDAR = "noleap"
SST_START = cftime.datetime(2000, 2, 27, calendar=SST_CALENDAR)
SST_RECORDS = 4  # daily records: 27 Feb, 28 Feb, 1 Mar, 2 Mar (no 29 Feb in noleap)
LAND = (slice(40, 60), slice(100, 140))  # rows, columns of the land box


def sst_records() -> np.ndarray:
    """The SST data in degC, shape (time, lat, lon), NaN over the land box; float32 as in files."""
    lat = np.arange(89.5, -90.0, -1.0)
    lon = np.arange(0.5, 360.0, 1.0)
    base = 28.0 * np.cos(np.deg2rad(lat))[:, None] ** 2 - 1.5 + 0.01 * lon[None, :]
    data = np.stack([base + 0.25 * k for k in range(SST_RECORDS)]).astype(np.float32)
    data[:, LAND[0], LAND[1]] = np.nan
    return data


def sst_dataset() -> xr.Dataset:
    lat = np.arange(89.5, -90.0, -1.0)
    lon = np.arange(0.5, 360.0, 1.0)
    times = [SST_START + dt.timedelta(days=k) for k in range(SST_RECORDS)]
    return xr.Dataset(
        {"tos": (("time", "lat", "lon"), sst_records(), {"units": "degC", "standard_name": "sea_surface_temperature"})},
        coords={
            "time": ("time", times),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )


def write_yaml(path: Path, mapping: dict) -> Path:
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def sst_truth() -> types.SimpleNamespace:
    """What the SST files hold: ``records_K`` (float64, NaN on land), ``land`` (row, column slices)."""
    return types.SimpleNamespace(records_K=sst_records().astype(np.float64) + 273.15, land=LAND, count=SST_RECORDS)


@pytest.fixture(scope="session")
def yaml_writer():
    return write_yaml


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """All data files, written once per session."""
    root = tmp_path_factory.mktemp("component_data")
    ds = sst_dataset()
    ds.to_netcdf(root / "sst.nc")
    ds.to_zarr(root / "sst.zarr", mode="w", consolidated=False)

    grid = CurvilinearGrid.rotated_pole(
        np.linspace(-20, 20, 9), np.linspace(-30, 30, 13), pole_lat=40.0, pole_lon=190.0
    )
    cds = grid.to_dataset()
    values = np.stack([280.0 + grid.center_lat, 285.0 + grid.center_lat])
    cds["ts"] = (("time", "y", "x"), values, {"units": "K"})
    cds = cds.assign_coords(
        time=(
            "time",
            [cftime.datetime(2000, 1, 1, calendar="standard"), cftime.datetime(2000, 1, 2, calendar="standard")],
        )
    )
    cds.to_netcdf(root / "curvilinear.nc")

    levels = np.array([850.0, 500.0])
    ta = 250.0 + np.arange(2 * 2 * 4 * 8, dtype=np.float64).reshape(2, 2, 4, 8) / 10.0
    lds = xr.Dataset(
        {"ta": (("time", "level", "lat", "lon"), ta, {"units": "K"})},
        coords={
            "time": (
                "time",
                [cftime.datetime(2000, 1, 1, calendar="360_day"), cftime.datetime(2000, 1, 2, calendar="360_day")],
            ),
            "level": ("level", levels, {"units": "hPa"}),
            "lat": ("lat", np.linspace(67.5, -67.5, 4), {"units": "degrees_north"}),
            "lon": ("lon", np.arange(22.5, 360, 45.0), {"units": "degrees_east"}),
        },
    )
    lds.to_netcdf(root / "levels.nc")

    (root / "co2.csv").write_text("# CO2 scenario\ntime,co2\n2000-01-01,300.0\n2000-01-11,310.0\n2000-02-10,250.0\n")
    xr.Dataset(
        {"xco2": (("time",), np.array([3.0e-4, 3.1e-4]), {"units": "mol mol-1"})},
        coords={
            "time": (
                "time",
                [cftime.datetime(2000, 1, 1, calendar="standard"), cftime.datetime(2000, 1, 11, calendar="standard")],
            )
        },
    ).to_netcdf(root / "co2.nc")
    return root


@pytest.fixture()
def sst_config(data_dir, tmp_path) -> Path:
    """A PrescribedField YAML config next to a copy-free reference to the SST netCDF file."""
    return write_yaml(
        tmp_path / "sst.yaml",
        {
            "name": "sst_data",
            "start": "2000-02-27T00:00:00",
            "time_step": "PT6H",
            "calendar": SST_CALENDAR,
            "end": "2000-03-02T00:00:00",
            "path": str(data_dir / "sst.nc"),
            "variable": "tos",
            "field": "sst",
            "units": "K",
        },
    )


@pytest.fixture()
def sst(sst_config):
    from components.forcing import PrescribedField

    component = PrescribedField()
    component.initialize(str(sst_config))
    yield component
    component.finalize()


@pytest.fixture()
def co2():
    from components.forcing import CO2Scenario

    return CO2Scenario.from_config(
        {
            "name": "co2",
            "start": "2000-01-01",
            "time_step": "P1D",
            "series": [["2000-01-01", 280.0], ["2000-01-11", 290.0], ["2000-03-01", 300.0]],
            "units": "ppm",
        }
    )


@pytest.fixture(scope="session")
def doc_example() -> types.ModuleType:
    """The code blocks of docs/components.md, run as a module (their asserts run too)."""
    # blocks marked <!-- doc-test: skip (...) --> (excerpts of examples/) are not run
    blocks = [block for skip, block in re.findall(r"(<!-- doc-test: skip[^\n]*-->\n)?```python\n(.*?)```",
                                                   DOC.read_text(), re.S) if not skip]
    assert blocks, f"{DOC} has no python code block"
    module = types.ModuleType("components_doc_example")
    sys.modules[module.__name__] = module
    exec(compile("\n".join(blocks), str(DOC), "exec"), module.__dict__)
    return module


@pytest.fixture()
def ocean(doc_example):
    """A fresh slab ocean from the doc example (a component with imports)."""
    return doc_example.SlabOcean.from_config(
        {"name": "ocean", "start": "2000-01-01", "time_step": "PT12H", "calendar": "360_day", "relaxation_time": "P5D"}
    )
