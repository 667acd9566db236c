"""Restarts continue bit-identically; kills at random instants are test_kill.py's."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest

from atmorep_coupler.errors import CheckpointError, ComponentError, ConfigError

from .conftest import base_config, open_output, open_run, run_config, write_config

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


def test_restart_from_another_configuration_is_refused(tmp_path):
    run_config(tmp_path / "first", restart_config())
    other = copy.deepcopy(restart_config())
    other["components"]["b"]["timestep"] = "PT6H"
    path = write_config(tmp_path / "second", other)
    shutil.copytree(tmp_path / "first" / "out" / "restarts", tmp_path / "second" / "out" / "restarts")
    with pytest.raises(CheckpointError, match="time_step"):
        open_run(path, out_dir=tmp_path / "second" / "out", resume=True, progress=False)


def test_a_run_stopped_after_its_first_output_before_its_first_restart_resumes(tmp_path):
    """The start restart (written before any output) is what such a run continues from."""
    reference = run_config(tmp_path / "reference", restart_config())
    broken = restart_config()
    broken["components"]["a"]["config"] = {"fail_after_hours": 8}  # after the 6 h output, before the 12 h restart
    path = write_config(tmp_path / "resumed", broken)
    with open_run(path, out_dir=tmp_path / "resumed" / "out", progress=False) as run:
        with pytest.raises(ComponentError, match="interrupted on purpose"):
            run.run()
    assert open_output(tmp_path / "resumed" / "out" / "b6h.zarr").sizes["time"] == 1
    resumed = run_config(tmp_path / "resumed", restart_config())
    assert resumed.resumed_from.name == "20000101T000000"
    assert_same_outputs(tmp_path / "reference" / "out", tmp_path / "resumed" / "out")
    assert [p.name for p in reference.summary.restarts] == ["20000101T120000", "20000102T000000"]  # the run's own
    assert (tmp_path / "reference" / "out" / "restarts" / "t" / "20000101T000000" / "coupler.json").is_file()


def test_restart_rotation_never_removes_what_latest_names_or_what_is_not_a_restart(tmp_path):
    from atmorep_coupler.coupling.restart import RestartStore

    run_config(tmp_path, restart_config())
    store = RestartStore(tmp_path / "out" / "restarts" / "t")
    latest = store.latest()
    with pytest.raises(CheckpointError, match="is the restart 'latest' names; it is never replaced"):
        store._check_replaceable(latest)
    foreign = store.root / "20000101T180000"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="exists and is not a restart folder; it is left alone"):
        store._check_replaceable(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    (store.root / ".20000101T120000.partial" / "components").mkdir(parents=True)  # what a kill mid-save leaves
    (store.root / ".latest.partial").write_text("20000101T120000\n")
    store.clean()
    assert sorted(p.name for p in store.root.iterdir()) == ["20000101T000000", "20000101T120000", "20000101T180000",
                                                            "20000102T000000", "latest"]


def test_resuming_after_an_output_path_was_edited_leaves_other_folders_alone(tmp_path):
    config = restart_config()
    run_config(tmp_path, config)
    precious = tmp_path / "out" / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    edited = copy.deepcopy(config)
    edited["outputs"][0]["path"] = "precious"
    with pytest.raises(CheckpointError, match="the restart was written for output 'b6h.zarr'"):
        run_config(tmp_path, edited)
    assert (precious / "thesis.txt").read_text() == "years of work"
    # the same path, but someone else's folder there now: not cut back, not removed
    restarts = tmp_path / "out" / "restarts" / "t"
    (restarts / "latest").write_text("20000101T120000\n")  # resume from the middle: the store would be cut back
    other = tmp_path / "out" / "b6h.zarr"
    shutil.rmtree(other)
    shutil.copytree(precious, other)
    with pytest.raises(CheckpointError, match=r"b6h.zarr: exists but was not written by this run's output 't/b/"):
        run_config(tmp_path, config)
    assert (other / "thesis.txt").read_text() == "years of work"
