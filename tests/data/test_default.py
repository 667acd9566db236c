"""The default dataset: layout of the tiny store, physics sanity, statistics, determinism, resume, cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from atmorep_coupler.data import month_index, open_store
from atmorep_coupler.data.default import (
    CoarseRunConfig,
    DefaultDataConfig,
    cache_dir,
    default_store_path,
    generate,
    is_complete,
)
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.units import parse_units

PRESSURE = (
    "vorticity",
    "divergence",
    "temperature",
    "geopotential",
    "u_component_of_wind",
    "v_component_of_wind",
)
SURFACE = ("surface_pressure", "sea_surface_temperature", "toa_incident_solar_radiation")
COARSE_PRESSURE = ("coarse_temperature", "coarse_geopotential", "coarse_u_component_of_wind",
                   "coarse_v_component_of_wind")
COARSE_SURFACE = ("coarse_surface_pressure",)


def _arrays(path) -> dict[str, np.ndarray]:
    root = zarr.open_group(path, mode="r")
    return {name: root[name][...] for name, _ in root.arrays()}


def test_tiny_store_layout(tiny_store):
    store = open_store(tiny_store)
    ds = store.dataset
    assert set(store.variables) == {*PRESSURE, *SURFACE, *COARSE_PRESSURE, *COARSE_SURFACE, "co2_equivalent"}
    for name in PRESSURE + COARSE_PRESSURE:
        assert ds[name].dims == ("time", "level", "latitude", "longitude")
    for name in SURFACE + COARSE_SURFACE:
        assert ds[name].dims == ("time", "latitude", "longitude")
    assert ds["co2_equivalent"].dims == ("time",)
    assert ds.sizes == {"time": 32, "level": 7, "latitude": 32, "longitude": 64}
    np.testing.assert_array_equal(store.levels, [200, 250, 300, 500, 700, 850, 1000])
    np.testing.assert_allclose(store.latitudes, 90.0 - 5.625 * (np.arange(32) + 0.5))
    np.testing.assert_allclose(store.longitudes, 5.625 * np.arange(64))
    assert store.is_global
    steps = np.diff(store.times)
    assert store.times[0] == np.datetime64("2000-01-01T00:00") and np.all(steps == np.timedelta64(3, "h"))
    expected_units = {
        "vorticity": "s-1",
        "divergence": "s-1",
        "temperature": "K",
        "geopotential": "m2 s-2",
        "u_component_of_wind": "m s-1",
        "v_component_of_wind": "m s-1",
        "surface_pressure": "Pa",
        "sea_surface_temperature": "K",
        "toa_incident_solar_radiation": "W m-2",
        "co2_equivalent": "ppm",
    }
    for name, units in expected_units.items():
        assert store.units(name) == units
        parse_units(units)
        assert ds[name].attrs["long_name"]
    assert ds["temperature"].attrs["standard_name"] == "air_temperature"
    assert "surface equilibrium temperature" in ds["sea_surface_temperature"].attrs["long_name"]
    assert ds.attrs["Conventions"].startswith("CF-")
    for coord, units in {"latitude": "degrees_north", "longitude": "degrees_east", "level": "hPa"}.items():
        assert ds[coord].attrs["units"] == units
    assert ds["time"].encoding["calendar"] == "proleptic_gregorian"
    assert all(not np.isnan(store.read(v)).any() for v in store.variables)


def test_tiny_store_physics_and_forcings(tiny_store):
    store = open_store(tiny_store)
    t = store.read("t")
    assert 180.0 < t.min() and t.max() < 330.0
    z = store.read("z")
    assert np.all(np.diff(z, axis=1) < 0)  # geopotential falls with increasing pressure
    sp = store.read("sp", units="hPa")
    assert 950.0 < sp.min() and sp.max() < 1050.0
    assert np.abs(store.read("u")).max() < 100.0
    # zonal-mean temperature at 850 hPa: six days after an isothermal start, the tropics are
    # already warmer than the poles (Newtonian relaxation toward Teq)
    t850 = store.read("t", levels=[850]).mean(axis=(0, 1, 3))
    assert t850[14:18].mean() > t850[:3].mean() + 3.0 and t850[14:18].mean() > t850[-3:].mean() + 3.0
    # forcings: zonally uniform, SST proxy between Tmin and T0 + warming, polar night in January
    sst = store.read("sst")
    assert np.all(sst == sst[..., :1]) and 200.0 <= sst.min() and sst.max() <= 315.1
    assert sst[0].mean(axis=1).argmax() > 16  # heating maximum south of the equator in January
    q = store.read("tisr")
    assert np.all(q[:, :3] == 0.0) and q[:, -1].min() > 500.0  # Arctic night, Antarctic midsummer
    co2 = store.read("co2")
    assert co2[0] == pytest.approx(280.0) and np.all(np.diff(co2) > 0)


def test_tiny_store_statistics_equal_numpy(tiny_store):
    store = open_store(tiny_store)
    stats = store.normalization
    months = month_index(store.times)
    assert set(months) == {0}
    for var in ("temperature", "u_component_of_wind", "sea_surface_temperature"):
        x = store.read(var).astype(np.float64)
        spatial = (0, 2, 3) if x.ndim == 4 else (0, 1, 2)
        np.testing.assert_allclose(
            stats.mean(var, [0], mode="local")[0], x.mean(axis=0), rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(stats.std(var, [0], mode="local")[0], x.std(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(stats.mean(var, [0], mode="global")[0], x.mean(axis=spatial), rtol=1e-10)
        np.testing.assert_allclose(stats.std(var, [0], mode="global")[0], x.std(axis=spatial), rtol=1e-8)


def test_same_seed_gives_an_identical_store(tiny_store, tmp_path):
    """An in-process run equals the session's subprocess run, bit for bit."""
    again = generate(DefaultDataConfig.tiny_store(seed=0), tmp_path / "again.zarr", progress=False)
    a, b = _arrays(tiny_store), _arrays(again)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_after_kill_equals_uninterrupted_run(tiny_store, tmp_path, make_default_cli):
    """Kill the generator right after it wrote the third day's data but before it checkpointed
    that block -- the worst moment -- then resume: the result equals an uninterrupted run."""
    out, marker = tmp_path / "resumed.zarr", tmp_path / "about_to_checkpoint"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from atmorep_coupler.data import default
        checkpoint = default._write_checkpoint
        def pause_before_third_block(path, state, written, config_json):
            if written == 24:
                Path({str(marker)!r}).touch()
                time.sleep(600)
            checkpoint(path, state, written, config_json)
        default._write_checkpoint = pause_before_third_block
        default.generate(default.DefaultDataConfig.tiny_store(), {str(out)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "generator did not reach the third block"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_complete(out)
    with np.load(out / "generator" / "state.npz") as saved:
        assert int(saved["written"]) == 16  # the checkpoint lags the data on disk
    partial = zarr.open_group(out, mode="r")["temperature"]
    assert not np.isnan(partial[16:24]).any() and np.isnan(partial[24:]).all()

    make_default_cli(out)
    assert is_complete(out)
    resumed, reference = _arrays(out), _arrays(tiny_store)
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
    times = open_store(out).times
    assert times.size == 32 and np.unique(times).size == 32
    np.testing.assert_array_equal(times, open_store(tiny_store).times)


def test_cache_location_and_reuse(tiny_store, tmp_path, monkeypatch):
    monkeypatch.delenv("ATMOREP_COUPLER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "atmorep_coupler"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "atmorep_coupler"
    monkeypatch.setenv("ATMOREP_COUPLER_CACHE", str(tmp_path / "cache"))
    config = DefaultDataConfig.tiny_store()
    path = default_store_path(config)
    assert path.parent == tmp_path / "cache" and "T21_tiny_seed0" in path.name
    assert default_store_path(DefaultDataConfig.tiny_store(seed=1)) != path
    shutil.copytree(tiny_store, path)
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    assert generate(config, progress=False) == path  # reused, nothing rewritten
    assert before == {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match="generated with other settings"):
        generate(DefaultDataConfig.tiny_store(seed=5), path, progress=False)


def test_store_of_an_older_generator_is_not_reused(tiny_store, tmp_path, monkeypatch):
    """The generator version is part of the fingerprint and of the saved config: a store written by
    an older generator (other regridding weights) is neither found in the cache nor taken as complete."""
    from atmorep_coupler.data import default

    config = DefaultDataConfig.tiny_store()
    current = config.fingerprint()
    monkeypatch.setattr(default, "GENERATOR_VERSION", default.GENERATOR_VERSION - 1)
    assert config.fingerprint() != current
    old = tmp_path / "old.zarr"
    shutil.copytree(tiny_store, old)
    state_file = old / "generator" / "state.npz"
    with np.load(state_file) as saved:  # rewrite the saved config as the older generator wrote it
        state = {k: saved[k] for k in saved.files}
    state["config"] = np.asarray(json.dumps(default._jsonable(config), sort_keys=True))
    np.savez(state_file, **state)
    monkeypatch.undo()
    assert not is_complete(old, config)
    with pytest.raises(DataError, match="generated with other settings"):
        generate(config, old, progress=False)


def test_refuses_to_overwrite_foreign_data(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(DataError, match="not a default-data store"):
        generate(DefaultDataConfig.tiny_store(), precious, progress=False)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_config_validation():
    with pytest.raises(ConfigError, match=">= 100 days of spin-up"):
        DefaultDataConfig(spinup_days=10).validate()
    with pytest.raises(ConfigError, match="longer than 0 days"):
        DefaultDataConfig(years=0).validate()
    assert DefaultDataConfig().n_times == 731 * 8  # two years of 365.25 days, rounded up
    assert DefaultDataConfig(years=1).record_days == 366
    with pytest.raises(ConfigError, match=r"coarse.levels_hPa: need at least two of the output levels"):
        DefaultDataConfig(coarse=CoarseRunConfig(levels_hPa=(400.0, 500.0))).validate()
    with pytest.raises(ConfigError, match="coarse.tau_hours: must be positive"):
        DefaultDataConfig(coarse=CoarseRunConfig(tau_hours=0.0)).validate()
    DefaultDataConfig(coarse=CoarseRunConfig(enabled=False, tau_hours=0.0)).validate()  # unused when disabled
