"""Helpers for coupling tests: write a coupling YAML, run it, read its zarr outputs."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

from atmorep_coupler.coupling.driver import CoupledRun

REPO = Path(__file__).resolve().parents[2]
ANALYTIC = "tests.coupling.analytic:Analytic"
TRUST = ("tests",)
"""``kind: tests.coupling.analytic:Analytic`` imports a module outside the registered kinds' packages."""


def base_config() -> dict:
    """Two analytic components on different grids, one averaged coupling, one output."""
    return {
        "version": 1,
        "run": {"name": "t", "start": "2000-01-01T00:00:00", "end": "2000-01-02T00:00:00", "calendar": "noleap"},
        "grids": {
            "g6": {"type": "regular_latlon", "nlat": 6, "nlon": 12},
            "g8": {"type": "gaussian", "nlat": 8, "nlon": 16},
        },
        "components": {
            "a": {"kind": ANALYTIC, "grid": "g6", "timestep": "PT1H"},
            "b": {"kind": ANALYTIC, "grid": "g8", "timestep": "PT3H",
                  "config": {"nlat": 8, "nlon": 16, "gaussian": True}},
        },
        "couplings": [
            {"from": "a", "to": "b", "fields": [{"src": "signal", "dst": "received"}], "period": "PT6H",
             "time_reduction": "average", "remap": {"method": "conservative"}},
        ],
        "outputs": [
            {"component": "b", "variables": ["received"], "interval": "PT6H", "reduction": "mean", "path": "b.zarr"},
        ],
    }


def write_config(folder: Path, config: dict, name: str = "run.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def open_run(path: Path, **kwargs) -> CoupledRun:
    """``CoupledRun.from_file`` trusting the test package's components (``allow_imports=TRUST``)."""
    return CoupledRun.from_file(path, allow_imports=TRUST, **kwargs)


def run_config(folder: Path, config: dict, **kwargs) -> CoupledRun:
    """Run ``config`` to its end with outputs under ``folder/out``; returns the (closed) run."""
    path = write_config(folder, config)
    with open_run(path, out_dir=folder / "out", progress=False, **kwargs) as run:
        run.summary = run.run()
    return run


def open_output(path: Path) -> xr.Dataset:
    return xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)).load()


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(base_config())


def bench_module(name: str):
    """``bench/<name>.py`` as a module: a benchmark and its CI test share one engine."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "bench" / f"{name}.py")
        module = sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[key]
