"""The classical model in coupled runs: coupling_configs/classical_only.yaml through the command line
(CO2 scenario -> classical), its +4 K counterfactual as a one-line change, and nudging of the
classical model toward another model's state through the coupler (regridded, optional imports)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dinosaur")

from atmorep_coupler.data import forcings  # noqa: E402
from atmorep_coupler.regrid.grids import GaussianGrid  # noqa: E402
from atmorep_coupler.run import main  # noqa: E402

from .conftest import open_output, run_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "coupling_configs" / "classical_only.yaml"
RAMP = "ramp: {warming_rate_K_per_year: 1.0}"


def shortened(text: str) -> str:
    """The example cut to 3 days with a 2-day spin-up (the test needs the forcing, not a climate)."""
    for old, new in (("end: 2000-01-06T00:00:00", "end: 2000-01-04T00:00:00"), ("spinup_days: 100", "spinup_days: 2")):
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The control run and the +4 K run of the example, each through ``python -m atmorep_coupler.run``."""
    root = tmp_path_factory.mktemp("classical_only")
    control = shortened(CONFIG.read_text())
    assert control.count(RAMP) == 1
    plus4 = control.replace(RAMP, "ramp: {warming_rate_K_per_year: 1.0, warming_offset_K: 4.0}")
    out = {}
    for name, text in (("control", control), ("plus4", plus4)):
        path = root / f"{name}.yaml"
        path.write_text(text)
        code, report = _run_cli(path, root / name)
        assert code == 0
        out[name] = {"report": report, "data": open_output(root / name / "classical_daily.zarr"), "text": text}
    return out


def _run_cli(path: Path, out: Path) -> tuple[int, dict]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([str(path), "--out", str(out), "--no-progress"])
    return code, json.loads(buffer.getvalue())


def test_classical_only_runs_from_the_command_line(runs):
    report, data = runs["control"]["report"], runs["control"]["data"]
    assert report["simulated_days"] == 3.0 and report["last_restart"].endswith("20000104T000000")
    assert data["temperature"].dims == ("time", "level", "latitude", "longitude")
    assert data["temperature"].shape == (3, 7, 24, 48) and data["co2_equivalent"].dims == ("time",)
    np.testing.assert_allclose(data["latitude"].values, GaussianGrid(24).lat, atol=1e-10)
    units = {name: data[name].attrs["units"] for name in data.data_vars if "units" in data[name].attrs}
    assert units["temperature"] == "K" and units["geopotential"] == "m2 s-2" and units["co2_equivalent"] == "ppm"
    assert data["temperature"].attrs["standard_name"] == "air_temperature"
    t = data["temperature"].values
    assert np.isfinite(t).all() and 180.0 < t.min() and t.max() < 330.0
    # Day d is forced with the scenario's CO2 equivalent at the start of day d (lag one day), which the
    # model turns back into the ramp's warming d / 365.2425 K.
    scenario = forcings.ClimateScenario(warming_rate_K_per_year=1.0)
    days = np.arange(3.0)
    np.testing.assert_allclose(data["co2_equivalent"].values, forcings.co2_equivalent(days, scenario), rtol=1e-12)
    np.testing.assert_allclose(data["surface_warming"].values, forcings.warming(days, scenario), rtol=0, atol=1e-12)


def test_plus_4K_is_one_line_and_warms_the_lower_troposphere(runs):
    control_lines, plus4_lines = runs["control"]["text"].splitlines(), runs["plus4"]["text"].splitlines()
    diff = [
        line for line in difflib.unified_diff(control_lines, plus4_lines, n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(diff) == 2  # one line removed, one added
    control, plus4 = runs["control"]["data"], runs["plus4"]["data"]
    np.testing.assert_allclose(plus4["surface_warming"].values - control["surface_warming"].values, 4.0, atol=1e-9)
    area = GaussianGrid(24).area
    change = ((plus4["temperature"] - control["temperature"]).values[-1] * area).sum(axis=(-2, -1)) / area.sum()
    levels = list(control["level"].values)
    assert change[levels.index(1000.0)] > 0.5 and change[levels.index(850.0)] > 0.2  # K, third day
    assert change[levels.index(1000.0)] > change[levels.index(500.0)] > -0.05


def test_nudging_toward_another_model_through_the_coupler(tmp_path):
    """A T10 'truth' with a +10 K warmer equilibrium feeds its temperature and winds (regridded
    conservatively, the winds as a vector) into the optional nudging imports of a T15 model; a T15
    twin that nothing nudges runs alongside. The nudged model's temperature moves to the truth's."""
    classical = {"spinup_days": 2, "resolution": "T15", "nudging": {"tau": "PT3H"}}
    config = {
        "version": 1,
        "run": {"name": "nudge", "start": "2000-01-01T00:00:00", "end": "2000-01-03T00:00:00"},
        "grids": {"t10": {"type": "gaussian", "nlat": 16}, "t15": {"type": "gaussian", "nlat": 24}},
        "components": {
            "truth": {"kind": "classical", "grid": "t10", "timestep": "PT1H",
                      "config": {"resolution": "T10", "spinup_days": 2, "scenario": {"warming_offset_K": 10.0}}},
            "nudged": {"kind": "classical", "grid": "t15", "timestep": "PT1H", "config": classical},
            "free": {"kind": "classical", "grid": "t15", "timestep": "PT1H", "config": classical},
        },
        "couplings": [{
            "from": "truth", "to": "nudged", "period": "PT6H", "time_reduction": "average",
            "remap": {"method": "conservative_normed"},
            "fields": [{"src": "temperature", "dst": "nudging_temperature"},
                       {"src": ["u_component_of_wind", "v_component_of_wind"],
                        "dst": ["nudging_u_component_of_wind", "nudging_v_component_of_wind"]}],
        }],
        "outputs": [{"component": name, "variables": ["temperature", "u_component_of_wind"], "interval": "P1D",
                     "path": f"{name}.zarr"} for name in ("truth", "nudged", "free")],
    }
    run = run_config(tmp_path, config)
    assert run.summary.elapsed_seconds == 2 * 86400
    out = {name: open_output(tmp_path / "out" / f"{name}.zarr") for name in ("truth", "nudged", "free")}
    areas = {"truth": GaussianGrid(16).area, "nudged": GaussianGrid(24).area, "free": GaussianGrid(24).area}
    mean = {
        name: (ds["temperature"].values[-1] * areas[name]).sum(axis=(-2, -1)) / areas[name].sum()
        for name, ds in out.items()
    }
    for level in (300.0, 500.0, 700.0, 850.0):
        k = list(out["truth"]["level"].values).index(level)
        gap_free, gap_nudged = abs(mean["free"][k] - mean["truth"][k]), abs(mean["nudged"][k] - mean["truth"][k])
        assert gap_free > 0.3 and gap_nudged < 0.3 * gap_free, (level, gap_nudged, gap_free)
    assert np.isfinite(out["nudged"]["u_component_of_wind"].values).all()
