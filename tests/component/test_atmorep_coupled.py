"""The AtmoRep component in a coupled run (registry kind ``atmorep``): the coarse classical model's
temperature reaches it as conditioning through the coupler's conservative map, the CO2 scenario and a
prescribed SST as forcing; a two-member ensemble is written member by member (one item each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("dinosaur")

from atmorep_coupler.coupling.driver import CoupledRun  # noqa: E402
from atmorep_coupler.data import forcings, open_store  # noqa: E402
from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder  # noqa: E402
from atmorep_coupler.training.trainer import Trainer  # noqa: E402

from .test_atmorep import tiny_conditioned_run  # noqa: E402


@pytest.mark.slow
def test_classical_model_conditions_the_atmorep_component(tiny_store, tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_conditioned_run(tiny_store))
    for _ in range(10):
        trainer.train_step()
    checkpoint = trainer.save_checkpoint(tmp_path / "tiny.pt")
    store = open_store(tiny_store)
    atm_grid = LatLonGrid.from_centers(store.latitudes, store.longitudes)  # cells centred on 0 deg longitude
    instant = {"period": "PT3H", "lag": 0, "time_reduction": "instant"}
    config = {
        "version": 1,
        "run": {"name": "atmorep-coupled", "start": "2000-01-01T06:00:00", "end": "2000-01-01T18:00:00",
                "calendar": "proleptic_gregorian", "seed": 0, "restart": {"every": "PT12H"}},
        "grids": {"atm": {"type": "regular_latlon", "nlat": 32, "nlon": 64, "first_lon": 0.0},
                  "t15": {"type": "gaussian", "nlat": 24, "nlon": 48, "lat_order": "descending"}},
        "components": {
            "co2": {"kind": "co2_scenario", "timestep": "PT3H", "config": {"quantity": "co2", "ramp": {}}},
            "sst": {"kind": "prescribed", "grid": "atm", "timestep": "PT3H",
                    "config": {"path": str(tiny_store), "variable": "sea_surface_temperature"}},
            "classical": {"kind": "classical", "grid": "t15", "timestep": "PT1H",
                          "config": {"resolution": "T15", "pressure_levels_hPa": [500, 850]}},
            "atmorep": {"kind": "atmorep", "grid": "atm", "timestep": "PT3H", "ensemble": {"members": 2},
                        "config": {"checkpoint": str(checkpoint), "initial_condition": str(tiny_store)}},
        },
        "couplings": [
            {"from": "co2", "to": "atmorep", "fields": [{"src": "co2", "dst": "co2_equivalent"}], **instant},
            {"from": "sst", "to": "atmorep", "fields": [{"src": "sea_surface_temperature",
                                                          "dst": "sea_surface_temperature"}], **instant},
            {"from": "classical", "to": "atmorep", "fields": [{"src": "temperature", "dst": "coarse_temperature"}],
             "remap": {"method": "conservative_normed"}, **instant},
        ],
        "outputs": [{"component": "atmorep", "variables": ["temperature", "temperature_member_0", "temperature_member_1"],
                     "interval": "PT6H", "reduction": "mean", "path": "atm.zarr"}],
    }
    path = tmp_path / "coupled.yaml"
    path.write_text(yaml.safe_dump(config))
    with CoupledRun.from_file(path, out_dir=tmp_path / "out") as run:
        run.run()
        atm, classical = run.components["atmorep"], run.components["classical"]
        assert atm.get_current_time() == 12 * 3600.0
        # the last import is the classical state at the last target time, conservatively on this grid
        expect = Regridder(GaussianGrid(24, 48), atm_grid, "conservative_normed", progress=False).apply(
            classical.get_value_ptr("temperature").reshape(2, 24, 48).astype(np.float64))
        np.testing.assert_allclose(atm.get_value_ptr("coarse_temperature").reshape(2, 32, 64), expect, rtol=1e-6)
        scenario = forcings.ClimateScenario()
        days = forcings.days_since_epoch(np.datetime64("2000-01-01T18:00"), scenario.epoch)
        assert float(atm.get_value_ptr("co2_equivalent")[0]) == pytest.approx(
            float(forcings.co2_equivalent(days, scenario)), rel=1e-6)
        sst = store.read("sea_surface_temperature", time=[store.time_index(np.datetime64("2000-01-01T18:00"))])[0]
        np.testing.assert_allclose(atm.get_value_ptr("sea_surface_temperature").reshape(32, 64), sst, rtol=1e-6)
    import xarray as xr

    out = xr.open_zarr(tmp_path / "out" / "atm.zarr")
    assert out.sizes["time"] == 2 and out.temperature_member_1.dims == ("time", "level", "latitude", "longitude")
    np.testing.assert_allclose(out.temperature.values, (out.temperature_member_0 + out.temperature_member_1).values / 2,
                               rtol=1e-6)  # the prognostic export is the mean of the members
    assert np.isfinite(out.temperature.values).all()
