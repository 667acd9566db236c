"""Real ERA5 layouts from training to a coupled run, with no hand edits between the steps.

Stores in the exact WeatherBench 2 layout (dims ``time, level, longitude, latitude``, latitude ascending
with rows on the poles, ``int64`` levels in millibars, 6-hourly, consolidated zarr v2) and ARCO-ERA5
layout (``time, level, latitude, longitude``, latitude descending 90..-90), both with ERA5's names and
unit spellings (``2m_temperature``, ``specific_humidity`` in ``kg kg**-1``, ``toa_incident_solar_radiation``
accumulated in ``J m**-2``, SST NaN over land), are written by ``python -m atmorep_coupler.data era5-layout``
from the tiny default store. Then, as a user types them: ``stats``, ``train --config era5_tiny``,
``training.evaluate``, the BMI host example and plain BMI calls, and (WeatherBench 2) a coupled YAML run
whose SST comes from a prescribed component on its own 1° grid. Every CLI runs in-process through its
``main`` (the same code as the command line).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.data import open_store
from atmorep_coupler.data.__main__ import main as data_main
from atmorep_coupler.data.era5_layouts import land_mask
from atmorep_coupler.errors import ComponentError, ConfigError
from atmorep_coupler.regrid.grids import LatLonGrid
from atmorep_coupler.regrid.regridder import Regridder
from atmorep_coupler.train import config_path
from atmorep_coupler.train import main as train_main
from atmorep_coupler.training.evaluate import main as evaluate_main

REPO = Path(__file__).resolve().parents[2]
STEPS = 12
LAYOUTS = {"weatherbench2": 6, "arco-era5": 3}  # layout -> hours per time step of the stand-in
START = "2000-01-04T00:00:00"


@pytest.fixture(scope="module", params=list(LAYOUTS))
def trained(request, tiny_store, tmp_path_factory):
    """A layout's store, its statistics and a checkpoint trained on it by the commands of docs/training.md."""
    torch.set_num_threads(1)
    layout = request.param
    folder = tmp_path_factory.mktemp(layout)
    store = folder / f"{layout}.zarr"
    assert data_main(["era5-layout", layout, str(tiny_store), str(store), "--quiet"]) == 0
    assert data_main(["stats", str(store), "--quiet"]) == 0
    out = folder / "runs"
    assert train_main(["--config", "era5_tiny", "--store", str(store), "--steps", str(STEPS), "--out", str(out),
                       "--no-progress"]) == 0
    return layout, store, out / "checkpoints" / "last.pt"


def test_the_store_has_the_public_layout_and_reads_canonically(trained):
    layout, path, _ = trained
    raw = xr.open_zarr(path)  # consolidated metadata, as the public stores; it lists the statistics too
    horizontal = ("longitude", "latitude") if layout == "weatherbench2" else ("latitude", "longitude")
    assert raw["temperature"].dims == ("time", "level", *horizontal)
    assert raw["2m_temperature"].dims == ("time", *horizontal) and raw["land_sea_mask"].dims == horizontal
    assert raw.level.dtype == np.int64 and raw.level.attrs["units"] == "millibars"
    assert raw.latitude.values[0] == (-90.0 if layout == "weatherbench2" else 90.0)
    assert raw.toa_incident_solar_radiation.attrs["units"] == "J m**-2"
    assert raw.specific_humidity.attrs["units"] == "kg kg**-1"
    step = (raw.time.values[1] - raw.time.values[0]) / np.timedelta64(1, "h")
    assert step == LAYOUTS[layout]
    assert np.isnan(raw.sea_surface_temperature.values).any() and not np.isnan(raw.temperature.values).any()
    stats = xr.open_zarr(path, group="normalization")  # listed in the consolidated metadata
    assert "mean_toa_incident_solar_radiation" in stats and "land_sea_mask" not in stats.attrs["variables"]
    store = open_store(path)
    assert store.latitudes[0] == 90.0 and store.latitudes[-1] == -90.0
    assert store.normalization.has_missing("sea_surface_temperature")
    assert not store.normalization.has_missing("temperature")


def test_an_era5_name_that_is_no_identifier_gets_the_mapping_suggested(trained):
    _, store, _ = trained
    run = yaml.safe_load(config_path("era5_tiny").read_text())
    run["model"]["fields"][2] = {**run["model"]["fields"][2], "name": "2m_temperature"}
    del run["model"]["fields"][2]["source"]
    with pytest.raises(ConfigError, match=r"model.fields\[2\]: name: '2m_temperature' must be an identifier .* "
                                          r"e.g. name: t2m, source: 2m_temperature"):
        from atmorep_coupler.training.config import load_run_config

        load_run_config(run)


def test_the_checkpoint_records_what_inference_must_repeat(trained):
    layout, _, checkpoint = trained
    data = torch.load(checkpoint, weights_only=True)["data"]
    assert data["time_step"] == f"PT{LAYOUTS[layout]}H"
    fields = data["fields"]
    assert fields["t2m"] == {"variable": "2m_temperature", "units": "K", "predicted": True,
                             "missing_in_training": False, "missing_filled_with": None}
    assert fields["sea_surface_temperature"]["missing_in_training"] is True
    assert fields["sea_surface_temperature"]["missing_filled_with"] == "normalised_mean"
    assert fields["toa_incident_solar_radiation"]["units"] == "J m**-2"


def test_evaluation_scores_the_era5_fields(trained, tmp_path):
    layout, _, checkpoint = trained
    result = evaluate_main(["--checkpoint", str(checkpoint), "--batches", "2", "--out", str(tmp_path / "e.json"),
                            "--no-progress"])
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert result["units"] == {"temperature": "K", "specific_humidity": "kg kg-1", "t2m": "K"}
    assert result["leads"][0]["lead_hours"] == LAYOUTS[layout]
    for kind in ("model", "persistence"):  # forecast errors of a few kelvin at a 3-6 h lead, not the field's size
        assert 0.0 < result[kind]["temperature/rmse"] < 15.0
        assert 0.0 < result[kind]["specific_humidity/rmse"] < 5e-3


def bmi_config(tmp_path, checkpoint, store, **extra) -> str:
    path = tmp_path / "atmorep.yaml"
    path.write_text(yaml.safe_dump({"start": START, "calendar": "proleptic_gregorian", "checkpoint": str(checkpoint),
                                    "initial_condition": str(store), **extra}))
    return str(path)


def feed(model, store, *, land_value=None) -> np.ndarray:
    """Every pure import at the next step's target time from the store, through set_value in the units
    get_var_units names; SST keeps the store's NaN over land unless ``land_value`` replaces it."""
    when = model.datetime_at(model.get_current_time() + model.get_time_step())
    index = store.time_index(np.datetime64(when.isoformat()))
    sst = None
    for name in ("sea_surface_temperature", "toa_incident_solar_radiation"):
        values = store.read(name, time=[index], units=model.get_var_units(name))[0]
        if name == "sea_surface_temperature":
            sst = values.copy()
            if land_value is not None:
                values = np.where(np.isnan(values), land_value, values)
        model.set_value(name, values.reshape(-1))
    return sst


def test_plain_bmi_calls_treat_imports_as_training_did(trained, tmp_path):
    layout, store_path, checkpoint = trained
    store = open_store(store_path)
    model = AtmoRepComponent()
    model.initialize(bmi_config(tmp_path, checkpoint, store_path, ensemble={"members": 2}))
    assert model.get_time_step() == LAYOUTS[layout] * 3600.0  # from the checkpoint, no time_step key
    assert model.get_var_units("specific_humidity") == "kg kg-1"
    assert model.get_var_units("toa_incident_solar_radiation") == "J m-2"
    grid = model.get_var_grid("t2m")
    assert model.get_grid_rank(grid) == 2
    np.testing.assert_array_equal(model.get_grid_y(grid, np.empty(33)), np.linspace(90, -90, 33))  # north first
    standard = {item.name: item.standard_name for item in model.exchange_items()}
    assert standard["t2m"] == "air_temperature" and standard["toa_incident_solar_radiation"] == ""
    assert model.get_var_grid("t2m_member_1") == grid

    # an accumulation over 6 h where one hour's is expected: above 2000 W m-2 x 3600 s, refused
    six_hours = store.read("toa_incident_solar_radiation", time=[0])[0] * 6.0 + 8.0e6
    with pytest.raises(ComponentError, match=r"'toa_incident_solar_radiation' .* outside the valid range \[0, 7.2e\+06\]; "
                                             r"checkpoint \S+last.pt was trained on 'toa_incident_solar_radiation' in 'J m-2'"):
        model.set_value("toa_incident_solar_radiation", six_hours.reshape(-1))

    # SST NaN over land is filled as training filled it: the normalized mean (SST is globally normalized)
    sst = feed(model, store)
    land = np.isnan(sst)
    assert 0 < land.sum() < land.size
    model.update()
    with_nan = model.get_value("temperature", np.empty(model.get_grid_size(model.get_var_grid("temperature")),
                                                       np.float32))
    window = model._window["sea_surface_temperature"][0, -1].numpy()  # [lat, lon] normalized, newest step
    assert np.array_equal(window[land], np.zeros(land.sum(), np.float32))
    month_mean = float(model.norm.mean("sea_surface_temperature", [0], mode="global")[0])
    runs = {}
    for label, value in (("mean", month_mean), ("warm", 300.0)):  # the training fill, and a host's own fill
        other = AtmoRepComponent()
        other.initialize(bmi_config(tmp_path, checkpoint, store_path, ensemble={"members": 2}))
        feed(other, store, land_value=value)
        other.update()
        runs[label] = other.get_value("temperature", np.empty_like(with_nan))
    np.testing.assert_allclose(runs["mean"], with_nan, rtol=0, atol=1e-3)  # float32 round-off of the mean
    assert np.abs(runs["warm"] - with_nan).max() > 10 * np.abs(runs["mean"] - with_nan).max()
    assert 180.0 < with_nan.min() and with_nan.max() < 330.0
    model.finalize()


def test_a_field_without_a_plausible_range_is_logged_and_left_unchecked(trained, tmp_path, caplog, monkeypatch):
    from atmorep_coupler import units

    _, store, checkpoint = trained
    monkeypatch.delitem(units.PLAUSIBLE_RANGES, "sea_surface_temperature")
    model = AtmoRepComponent()
    with caplog.at_level(logging.INFO, logger="atmorep_coupler.component.atmorep"):
        model.initialize(bmi_config(tmp_path, checkpoint, store))
    assert ("component 'AtmoRepComponent': field 'sea_surface_temperature' (K, checkpoint "
            f"{checkpoint}): imports are not range-checked: no plausible range is tabulated for "
            "'sea_surface_temperature'") in caplog.text
    model.set_value("sea_surface_temperature", np.full(33 * 64, 15.0, np.float32))  # degC values pass unchecked
    with pytest.raises(ComponentError, match="outside the valid range"):  # the tabulated ones are still checked
        model.set_value("toa_incident_solar_radiation", np.full(33 * 64, -1.0, np.float32))
    model.finalize()


def test_the_bmi_host_example_runs_on_the_store_as_it_is(trained, tmp_path, capsys):
    from examples.bmi_host_loop import main as host_main

    layout, store, checkpoint = trained
    assert host_main(["--checkpoint", str(checkpoint), "--store", str(store), "--steps", "1",
                      "--out", str(tmp_path / "host")]) == 0
    printed = capsys.readouterr().out
    assert f"time step {LAYOUTS[layout] * 3600} s (PT{LAYOUTS[layout]}H)" in printed
    assert "specific_humidity" in printed and "kg kg-1" in printed
    host = np.load(tmp_path / "host" / "host_fields.npz")
    assert 180.0 < host["t2m"].min() and host["t2m"].max() < 330.0


def sst_file(path, start: str) -> np.ndarray:
    """A 1° SST product (latitude ascending, cell centres, degC) with NaN over the land mask; daily."""
    lat, lon = np.arange(-89.5, 90.0, 1.0), np.arange(0.5, 360.0, 1.0)
    base = 28.0 * np.cos(np.deg2rad(lat))[:, None] ** 2 - 1.5 + 0.005 * lon[None, :]
    values = np.stack([base, base + 0.5]).astype(np.float32)
    values[:, land_mask(lat, lon)] = np.nan
    times = np.array([np.datetime64(start), np.datetime64(start) + np.timedelta64(1, "D")])
    xr.Dataset({"sst": (("time", "lat", "lon"), values, {"units": "degC", "standard_name": "sea_surface_temperature"})},
               coords={"time": times, "lat": ("lat", lat, {"units": "degrees_north"}),
                       "lon": ("lon", lon, {"units": "degrees_east"})}).to_netcdf(path)
    return values[0] + 273.15


@pytest.mark.slow
@pytest.mark.parametrize("trained", ["weatherbench2"], indirect=True)  # era5_wb2.yaml describes WB2's grids
def test_coupled_yaml_run_with_a_prescribed_sst_on_its_own_grid(trained, tmp_path):
    layout, store_path, checkpoint = trained
    from atmorep_coupler.run import main as run_main

    sst_K = sst_file(tmp_path / "sst_1deg.nc", START[:10])
    sets = {"components.atmorep.config.checkpoint": checkpoint, "components.atmorep.config.initial_condition": store_path,
            "components.insolation.config.path": store_path, "components.sst.config.path": tmp_path / "sst_1deg.nc"}
    argv = [str(REPO / "coupling_configs" / "era5_wb2.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert run_main(argv + [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]) == 0
    out = xr.open_zarr(tmp_path / "out" / "atmorep.zarr")
    assert out.sizes["time"] == 2 and out.specific_humidity.attrs["units"] == "kg kg-1"
    assert out.toa_incident_solar_radiation.attrs["units"] == "J m-2"
    assert out.t2m.attrs["standard_name"] == "air_temperature"
    assert "standard_name" not in out.toa_incident_solar_radiation.attrs  # ERA5's accumulation has no CF name
    # the SST import 12 h after the product's first daily record: the 1° product conservatively on the
    # component's grid over its ocean cells; NaN where only land lies under a cell (unmapped, filled by the
    # component as training filled ERA5's SST over land)
    one_deg = LatLonGrid(180, 360, lat_order="ascending").with_mask(np.isfinite(sst_K))
    target = LatLonGrid.from_centers(np.linspace(90, -90, 33), np.arange(0, 360, 5.625))
    expect = Regridder(one_deg, target, "conservative_normed", progress=False).apply(
        np.where(np.isfinite(sst_K), sst_K + 0.25, 0.0))
    got = out.sea_surface_temperature.values[-1]
    assert np.array_equal(np.isnan(got), np.isnan(expect)) and 0 < np.isnan(got).sum() < got.size // 2
    np.testing.assert_allclose(got[np.isfinite(got)], expect[np.isfinite(expect)], rtol=1e-6)
    store = open_store(store_path)  # the insolation: the store's own values, flipped to north first
    tisr = store.read("toa_incident_solar_radiation", time=[store.time_index(np.datetime64("2000-01-04T12"))])[0]
    np.testing.assert_allclose(out.toa_incident_solar_radiation.values[-1], tisr, rtol=1e-6)
    assert 180.0 < float(out.temperature.min()) and float(out.temperature.max()) < 330.0
    assert 0.0 <= float(out.specific_humidity.min()) and float(out.specific_humidity.max()) < 0.05
