"""Restarts continue bit-identically; a killed run leaves readable outputs and resumes from them."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.errors import CheckpointError, ComponentError, ConfigError
from atmorep_coupler.run import main

from .conftest import base_config, open_output, open_run, run_config, write_config

REPO = Path(__file__).resolve().parents[2]


def restart_config(days: int = 1) -> dict:
    """a <-> b (averaged conservative one way, lagged vector the other), restarts every 12 h, outputs
    every 6 h (cut back on resume) and every day (open reductions saved mid-interval)."""
    config = base_config()
    config["run"].update(end=f"2000-01-0{1 + days}T00:00:00", restart={"every": "PT12H"})
    config["couplings"][0]["conservation"] = {"check": True}
    config["couplings"].append({"from": "b", "to": "a", "fields": [{"src": ["u", "v"], "dst": ["u_received", "v_received"]}],
                                "period": "PT6H", "lag": "PT6H", "time_reduction": "average",
                                "remap": {"method": "bilinear"}})
    config["outputs"] = [
        {"component": "b", "variables": ["received", "received_sum"], "interval": "PT6H", "reduction": "mean",
         "path": "b6h.zarr"},
        {"component": "a", "variables": ["signal", "u_received"], "interval": "P1D", "reduction": "max",
         "path": "a1d.zarr"},
    ]
    return config


def assert_same_outputs(first: Path, second: Path) -> None:
    for name in ("b6h.zarr", "a1d.zarr"):
        a, b = open_output(first / name), open_output(second / name)
        assert a.sizes == b.sizes
        for var in a.variables:
            np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=f"{name}: {var}")
    assert (first / "conservation.csv").read_text() == (second / "conservation.csv").read_text()


def test_restart_continues_bit_identically(tmp_path):
    reference = run_config(tmp_path / "reference", restart_config())
    assert [p.name for p in reference.summary.restarts] == ["20000101T120000", "20000102T000000"]

    broken = restart_config()
    broken["components"]["a"]["config"] = {"fail_after_hours": 21}  # after the 12 h restart and the 18 h output
    path = write_config(tmp_path / "resumed", broken)
    with open_run(path, out_dir=tmp_path / "resumed" / "out", progress=False) as run:
        with pytest.raises(ComponentError, match="interrupted on purpose"):
            run.run()
    assert open_output(tmp_path / "resumed" / "out" / "b6h.zarr").sizes["time"] == 3  # 6, 12 and 18 h

    resumed = run_config(tmp_path / "resumed", restart_config())  # restart.resume: auto
    assert resumed.resumed_from.name == "20000101T120000"
    assert_same_outputs(tmp_path / "reference" / "out", tmp_path / "resumed" / "out")
    for label in ("20000102T000000",):  # the final states agree too, component by component
        for name in ("a", "b"):
            with np.load(tmp_path / "reference/out/restarts/t" / label / f"components/{name}.npz") as x, \
                 np.load(tmp_path / "resumed/out/restarts/t" / label / f"components/{name}.npz") as y:
                for key in x.files:
                    np.testing.assert_array_equal(x[key], y[key])


def test_fresh_start_refuses_to_overwrite_outputs_and_resume_needs_a_restart(tmp_path):
    config = base_config()
    run_config(tmp_path, config)
    with pytest.raises(ConfigError, match="output store exists; delete it"):
        run_config(tmp_path, config)
    path = write_config(tmp_path / "other", config)
    with pytest.raises(CheckpointError, match="no restart to resume from"):
        open_run(path, out_dir=tmp_path / "other" / "out", resume=True, progress=False)


def test_killed_run_leaves_readable_output_and_resumes_bit_identically(tmp_path):
    slow = restart_config(days=2)
    slow["components"]["a"]["config"] = {"sleep_seconds": 0.06}
    path = write_config(tmp_path / "killed", slow)
    out = tmp_path / "killed" / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "atmorep_coupler.run", str(path), "--out", str(out), "--no-progress",
                                "--allow-import", "tests"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    latest = out / "restarts" / "t" / "latest"
    deadline = time.monotonic() + 120
    while not (latest.exists() and latest.read_text().strip() == "20000101T120000") and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # a little further into the second half day
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    # What was written before the kill is readable: consolidated metadata, whole records, CF times.
    ds = xr.open_zarr(out / "b6h.zarr", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    n = ds.sizes["time"]
    assert 2 <= n < 8
    assert [t.hour for t in ds["time"].values[:2]] == [6, 12]
    assert np.all(np.isfinite(ds["received"].values))

    reference = run_config(tmp_path / "reference", restart_config(days=2))
    assert main([str(path), "--out", str(out), "--resume", "--no-progress", "--allow-import", "tests"]) == 0
    assert_same_outputs(tmp_path / "reference" / "out", out)
    assert reference.summary.elapsed_seconds == 2 * 86400


def test_restart_from_another_configuration_is_refused(tmp_path):
    run_config(tmp_path / "first", restart_config())
    other = copy.deepcopy(restart_config())
    other["components"]["b"]["timestep"] = "PT6H"
    path = write_config(tmp_path / "second", other)
    import shutil

    shutil.copytree(tmp_path / "first" / "out" / "restarts", tmp_path / "second" / "out" / "restarts")
    with pytest.raises(CheckpointError, match="time_step"):
        open_run(path, out_dir=tmp_path / "second" / "out", resume=True, progress=False)
