"""The AtmoRep component with a fine-tuned checkpoint: the downscaled field on a second BMI grid, equal to an
independent offline computation from the fine-tuned network (``downstream.evaluate.downscale``: the network
called on the non-overlapping tiles of the paired data, bilinear interpolation of the coarse store added back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.component.fine_grid import fine_heads
from atmorep_coupler.downstream.evaluate import downscale
from atmorep_coupler.downstream.pairs import DownscalingPairs
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.checkpoint import load_checkpoint
from atmorep_coupler.model.multiformer import Multiformer, load_weights

START = "2000-01-02T00:00:00"
REPO = Path(__file__).resolve().parents[2]


def _component(run, tmp_path, members=1, **extra):
    config = {"start": START, "calendar": "proleptic_gregorian", "checkpoint": str(run["out"] / "finetuned.pt"),
              "initial_condition": str(run["pair"] / "coarse.zarr"), "tile_stagger": False, "tile_overlap": [0, 0],
              "ensemble": {"members": members}, "seed": 3, **extra}
    return AtmoRepComponent.from_config(config)


def _offline(run):
    """The fine field of the window ending at START, member by member, computed without the component."""
    path = run["out"] / "finetuned.pt"
    model_config, state = load_checkpoint(path)
    model = Multiformer(model_config)
    load_weights(model, state["model"], path)
    model.eval()
    base = model_config.__class__(**{**model_config.__dict__, "fields": model_config.fields[:-1]})
    (record,) = state["downscaling"]
    pairs = DownscalingPairs(str(run["pair"] / "coarse.zarr"), str(run["pair"] / "fine.zarr"), base,
                             model_config.fields[-1], batch_size=1, std=np.array(record["departure_std"]))
    end = int(np.searchsorted(pairs.fine.times, np.datetime64(START, "ns")))
    nt = model_config.neighbourhood[0]
    members = downscale(model, pairs, end - nt + 1)  # [nt, M, L, lat, lon]
    return members[-1], pairs.baseline_at(np.array([end]))[0]


def test_fine_grid_bmi_queries(finetuned_run, tmp_path):
    comp = _component(finetuned_run, tmp_path, members=2)
    grid = comp.get_var_grid("temperature_fine")
    assert grid != comp.get_var_grid("temperature")
    assert comp.get_var_grid("temperature_fine_member_1") == grid
    assert comp.get_grid_rank(grid) == 3 and comp.get_grid_type(grid) == "rectilinear"
    assert list(comp.get_grid_shape(grid, np.zeros(3, dtype=np.int64))) == [2, 64, 128]
    assert comp.get_grid_size(grid) == 2 * 64 * 128
    np.testing.assert_allclose(comp.get_grid_y(grid, np.zeros(64)), 90 - 2.8125 * (np.arange(64) + 0.5))
    np.testing.assert_allclose(comp.get_grid_x(grid, np.zeros(128)), 2.8125 * np.arange(128))
    np.testing.assert_array_equal(comp.get_grid_z(grid, np.zeros(2)), [850.0, 500.0])
    assert comp.get_var_units("temperature_fine") == "K" and comp.get_var_location("temperature_fine") == "node"
    assert "temperature_fine" in comp.get_output_var_names() and "temperature_fine" not in comp.get_input_var_names()
    field = comp.get_field("temperature_fine")
    assert field.dims == ("level", "latitude", "longitude") and field.shape == (2, 64, 128)
    np.testing.assert_allclose(field, comp.get_field("temperature_fine_member_0") / 2
                               + comp.get_field("temperature_fine_member_1") / 2, rtol=0, atol=1e-4)
    comp.finalize()


def test_exported_fine_field_equals_the_offline_downscaling(finetuned_run, tmp_path):
    members, baseline = _offline(finetuned_run)  # [M, L, lat, lon], bilinear interpolation of the coarse store
    comp = _component(finetuned_run, tmp_path)
    exported = comp.get_field("temperature_fine").values
    # one member: the mean of the tail's heads, as for the coarse fields; equal to float32 round-off
    np.testing.assert_allclose(exported, members.mean(0), rtol=0, atol=2e-4)
    # the tolerance would catch a missing departure: the network adds more than 100 times it to the baseline
    assert np.abs(members.mean(0) - baseline).max() > 100 * 2e-4
    comp.finalize()
    two = _component(finetuned_run, tmp_path, members=2)
    heads = fine_heads(3, 0, 2, members.shape[0])
    for k, head in enumerate(heads):
        np.testing.assert_allclose(two.get_field(f"temperature_fine_member_{k}").values, members[head],
                                   rtol=0, atol=2e-4)
    two.finalize()


def test_a_step_exports_the_downscaled_new_state(finetuned_run, tmp_path):
    """After a step the fine field is the downscaling of the new window: bilinear interpolation of the
    component's own new temperature plus the departure, so it follows the coarse state it was made from."""
    comp = _component(finetuned_run, tmp_path)
    comp.set_value("sea_surface_temperature", np.full(32 * 64, 290.0, dtype=np.float32))
    before = comp.get_field("temperature_fine").values
    comp.update()
    after = comp.get_field("temperature_fine").values
    coarse = comp.get_field("temperature").values
    baseline = comp.fine.bilinear.apply(coarse.astype(np.float64))
    departure_std = comp.fine.fields[0].std[:, None, None]
    # the departure stays within a few of its standard deviations of the new state's interpolation ...
    assert np.abs(after - baseline).max() < 10 * departure_std.max()
    # ... and the export moved with the state
    assert not np.allclose(after, before)
    comp.finalize()


def test_a_fine_field_without_its_downscaling_record_is_refused(finetuned_run, tmp_path):
    from atmorep_coupler.model.checkpoint import FINETUNED_FORMAT, load_state, save_state

    state = load_state(finetuned_run["out"] / "finetuned.pt", [FINETUNED_FORMAT])
    state["downscaling"] = []
    bad = save_state({k: v for k, v in state.items() if k not in ("format", "sha256")}, tmp_path / "bad.pt",
                     format=FINETUNED_FORMAT)
    with pytest.raises(CheckpointError, match=r"bad\.pt: field 'temperature_fine' .* no downscaling record"):
        _component(finetuned_run, tmp_path, checkpoint=str(bad))


def test_coupled_yaml_writes_and_passes_on_the_downscaled_field(finetuned_run, tmp_path):
    """coupling_configs/downscaling.yaml on the analytic pair: the fine field written on its 64 x 128 grid
    every 3 hours, and passed on through the coupler's bilinear regridding from the component's second grid
    to a receiver's T42 Gaussian grid (its equality with the offline downscaling: the tests above)."""
    import xarray as xr

    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder
    from atmorep_coupler.run import main as run_main

    pair = finetuned_run["pair"]
    sets = {"components.atmorep.config.checkpoint": finetuned_run["out"] / "finetuned.pt",
            "components.atmorep.config.initial_condition": pair / "coarse.zarr",
            "components.atmorep.config.tile_stagger": "false", "components.atmorep.config.tile_overlap": "[0, 0]",
            "components.sst.config.path": pair / "coarse.zarr", "run.start": START, "run.end": "2000-01-02T06:00:00",
            "components.impacts.config.fields":
                "[{name: air_temperature, units: K, standard_name: air_temperature, levels: [850, 500]}]"}
    argv = [str(REPO / "coupling_configs" / "downscaling.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert run_main(argv + [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]) == 0
    fine = xr.open_zarr(tmp_path / "out" / "atmorep_fine.zarr").temperature_fine
    coarse = xr.open_zarr(tmp_path / "out" / "atmorep.zarr").temperature
    received = xr.open_zarr(tmp_path / "out" / "impacts.zarr").air_temperature
    assert fine.shape == (2, 2, 64, 128) and coarse.shape == (2, 2, 32, 64) and received.shape == (2, 2, 64, 128)
    np.testing.assert_allclose(fine.latitude, 90 - 2.8125 * (np.arange(64) + 0.5))
    np.testing.assert_allclose(fine.longitude, 2.8125 * np.arange(128))
    fine_grid = LatLonGrid.from_centers(fine.latitude.values, fine.longitude.values)
    to_t42 = Regridder(fine_grid, GaussianGrid(64, 128, lat_order="descending"), "bilinear", progress=False)
    for t in range(2):  # what the receiver holds after each 3-hour exchange: the fine field, regridded
        np.testing.assert_allclose(received.values[t], to_t42.apply(fine.values[t].astype(np.float64)),
                                   rtol=0, atol=1e-4)
    # the stepped fine field stays the downscaling of the stepped coarse state (within a few departure scales)
    to_fine = Regridder(LatLonGrid.from_centers(coarse.latitude.values, coarse.longitude.values), fine_grid, "bilinear",
                        progress=False)
    assert np.abs(fine.values[-1] - to_fine.apply(coarse.values[-1].astype(np.float64))).max() < 5.0


@pytest.mark.slow
def test_bmi_tester_passes_the_component_with_its_fine_grid(finetuned_run, tmp_path):
    """The CSDMS bmi-tester on the component of the fine-tuned checkpoint (two members): every variable and
    grid, the fine grid of ``temperature_fine`` and its member items included (run as in
    tests/component/test_bmi_tester.py)."""
    pytest.importorskip("bmi_tester")
    from tests.component.conftest import write_yaml
    from tests.component.test_bmi_tester import bmi_tester

    config = {"start": START, "calendar": "proleptic_gregorian", "ensemble": {"members": 2},
              "checkpoint": str(finetuned_run["out"] / "finetuned.pt"),
              "initial_condition": str(finetuned_run["pair"] / "coarse.zarr")}
    output = bmi_tester("tests.component.bmi_prefed:PrefedAtmoRep", config, tmp_path, write_yaml)
    assert "temperature_fine_member_1" in output  # the fine items were among the variables tested


def test_restart_restores_the_downscaled_exports_bit_for_bit(finetuned_run, tmp_path):
    comp = _component(finetuned_run, tmp_path, members=2)
    comp.set_value("sea_surface_temperature", np.full(32 * 64, 290.0, dtype=np.float32))
    comp.update()
    saved = {k: comp.get_field(k).values for k in ("temperature_fine", "temperature_fine_member_1")}
    path = comp.save_state(tmp_path / "restart")
    comp.update()
    comp.load_state(path)
    for name, values in saved.items():
        assert np.array_equal(comp.get_field(name).values, values)
    comp.finalize()
