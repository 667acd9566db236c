"""coupling_configs/forcing_only.yaml through the CLI: real forcing components, an exchange between grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from atmorep_coupler.data import forcings
from atmorep_coupler.regrid.grids import GaussianGrid, LatLonGrid
from atmorep_coupler.run import main

from .conftest import open_output

CONFIG = Path(__file__).resolve().parents[2] / "coupling_configs" / "forcing_only.yaml"


def test_forcing_only_run_from_the_command_line(tmp_path, capsys):
    config = yaml.safe_load(CONFIG.read_text())
    config["run"].update(end="2000-01-04T00:00:00", restart={"every": "P1D"})  # three days of the example
    path = tmp_path / "forcing_only.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["simulated_days"] == 3.0
    assert report["max_conservation_error"]["couplings[0] insolation->model"] < 1e-12

    model = open_output(tmp_path / "out" / "model_daily.zarr")
    source = open_output(tmp_path / "out" / "insolation_daily.zarr")
    assert model.sizes["time"] == source.sizes["time"] == 3
    # The model holds, for each day, the conservative map of that day's mean insolation: same integral.
    src_area, dst_area = LatLonGrid(64, 128).area, GaussianGrid(32, 64).area
    for day in range(3):
        assert np.sum(model["toa_insolation"].values[day] * dst_area) == pytest.approx(
            np.sum(source["insolation"].values[day] * src_area), rel=1e-12)
    # CO2 is the instant value at the start of each day (lag one period), as a mole fraction.
    scenario = forcings.ClimateScenario(warming_rate_K_per_year=1.0)
    expected = [forcings.co2_equivalent(float(day), scenario) * 1e-6 for day in range(3)]
    np.testing.assert_allclose(model["co2"].values, expected, rtol=1e-12)
    assert model["toa_insolation"].attrs["units"] == "W m-2"
