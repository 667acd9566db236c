"""The run loop: lags and time reductions against hand-computed values, t = 0, order independence."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from atmorep_coupler.regrid.grids import LatLonGrid

from .conftest import ANALYTIC, open_output, run_config

PERIOD_H = 6
# receiver: (time_reduction, lag in hours)
CASES = {
    "b_instant": ("instant", 0),
    "b_average": ("average", 0),
    "b_accumulate": ("accumulate", 0),
    "b_min": ("min", 0),
    "b_max": ("max", 0),
    "b_average_lag1": ("average", 6),
    "b_instant_lag2": ("instant", 12),
}


def put(kind: str, end_h: int) -> float:
    """Hand-computed reduction of a's signal (280 K + 1 K/h, without its pattern) over the window
    (E - 6 h, E]: samples after a's 1-hourly steps at E-5 ... E. Windows ending at or before the
    start are the initial value (280 K, one sample)."""
    if end_h <= 0:
        return 280.0
    samples = 280.0 + np.arange(end_h - 5, end_h + 1)
    return {"instant": samples[-1], "average": samples.mean(), "accumulate": samples.sum(),
            "min": samples.min(), "max": samples.max()}[kind]


def lag_config() -> dict:
    components = {"a": {"kind": ANALYTIC, "grid": "g6", "timestep": "PT1H"}}
    couplings, outputs = [], []
    for name, (kind, lag_h) in CASES.items():
        components[name] = {"kind": ANALYTIC, "grid": "g6", "timestep": "PT2H"}
        couplings.append({"from": "a", "to": name, "fields": [{"src": "signal", "dst": "received"}],
                          "period": f"PT{PERIOD_H}H", "lag": f"PT{lag_h}H" if lag_h else 0, "time_reduction": kind})
        outputs.append({"component": name, "variables": ["received"], "interval": "PT2H", "reduction": "instant",
                        "path": f"{name}.zarr"})
    return {
        "version": 1,
        "run": {"name": "lags", "start": "2000-01-01T00:00:00", "end": "2000-01-02T00:00:00", "calendar": "360_day"},
        "grids": {"g6": {"type": "regular_latlon", "nlat": 6, "nlon": 12}},
        "components": components,
        "couplings": couplings,
        "outputs": outputs,
    }


def test_lagged_and_reduced_exchanges_match_hand_computed_values(tmp_path):
    run_config(tmp_path, lag_config())
    grid = LatLonGrid(6, 12)
    pattern = 10.0 * np.cos(np.deg2rad(grid.center_lat)) * np.cos(np.deg2rad(grid.center_lon))
    for name, (kind, lag_h) in CASES.items():
        ds = open_output(tmp_path / "out" / f"{name}.zarr")
        hours = [(t.day - 1) * 24 + t.hour for t in ds["time"].values]
        assert list(hours) == list(range(2, 25, 2))
        for record, hour in enumerate(hours):
            # The record at t holds what the step (t - 2 h, t] was forced with: the import of the
            # window starting at T = 6 h * floor((t - 2 h) / 6 h), i.e. the put for E = T + P - L.
            window_start = PERIOD_H * ((hour - 2) // PERIOD_H)
            end = window_start + PERIOD_H - lag_h
            n_samples = 6 if (kind == "accumulate" and end > 0) else 1
            expected = put(kind, end) + n_samples * pattern
            np.testing.assert_allclose(ds["received"].values[record], expected, rtol=1e-14,
                                       err_msg=f"{name} at {hour} h (put for {end} h)")


def test_results_do_not_depend_on_the_order_components_are_listed(tmp_path):
    config = lag_config()
    reordered = copy.deepcopy(config)
    reordered["components"] = dict(reversed(list(config["components"].items())))
    run_config(tmp_path / "yaml_order", config)
    run_config(tmp_path / "reversed", reordered)
    for name in CASES:
        a = open_output(tmp_path / "yaml_order" / "out" / f"{name}.zarr")
        b = open_output(tmp_path / "reversed" / "out" / f"{name}.zarr")
        np.testing.assert_array_equal(a["received"].values, b["received"].values)


def test_scalar_scenario_average_into_a_receiver_with_unit_conversion(tmp_path):
    """A CO2 series (ppm, linear in time) averaged over 6 h windows arrives as a mole fraction."""
    config = {
        "version": 1,
        "run": {"name": "co2", "start": "2000-01-01T00:00:00", "end": "2000-01-02T00:00:00"},
        "grids": {},
        "components": {
            "co2": {"kind": "co2_scenario", "timestep": "PT1H", "grid": None,
                    "config": {"series": [["2000-01-01", 280.0], ["2000-01-03", 300.0]], "units": "ppm"}},
            "sink": {"kind": "receiver", "timestep": "PT3H", "grid": None,
                     "config": {"fields": [{"name": "xco2", "units": "1", "scalar": True}]}},
        },
        "couplings": [{"from": "co2", "to": "sink", "fields": [{"src": "co2", "dst": "xco2"}], "period": "PT6H",
                       "time_reduction": "average"}],
        "outputs": [{"component": "sink", "variables": ["xco2"], "interval": "PT6H", "reduction": "max", "path": "co2.zarr"}],
    }
    run_config(tmp_path, config)
    ds = open_output(tmp_path / "out" / "co2.zarr")
    assert ds["xco2"].attrs["units"] == "1" and ds["xco2"].attrs["cell_methods"] == "time: maximum"
    for record, start_h in enumerate(range(0, 24, 6)):
        hours = np.arange(start_h + 1, start_h + 7)
        expected = np.mean(280.0 + 20.0 * hours / 48.0) * 1e-6
        assert ds["xco2"].values[record] == pytest.approx(expected, rel=1e-14)


def test_outputs_carry_cf_metadata_and_time_bounds(tmp_path):
    config = lag_config()
    config["outputs"] = [{"component": "a", "variables": ["signal"], "interval": "PT6H", "reduction": "mean",
                          "path": "a.zarr"}]
    run_config(tmp_path, config)
    ds = open_output(tmp_path / "out" / "a.zarr")
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds["signal"].attrs == {"units": "K", "standard_name": "air_temperature", "long_name": "signal",
                                  "cell_methods": "time: mean"}
    assert ds["latitude"].attrs["standard_name"] == "latitude" and ds["longitude"].attrs["units"] == "degrees_east"
    assert ds["time"].encoding["calendar"] == "360_day"
    bounds = ds["time_bnds"].values
    assert [(b[0].hour, b[1].hour) for b in bounds] == [(0, 6), (6, 12), (12, 18), (18, 0)]
    grid = LatLonGrid(6, 12)
    pattern = 10.0 * np.cos(np.deg2rad(grid.center_lat)) * np.cos(np.deg2rad(grid.center_lon))
    for record in range(4):
        expected = 280.0 + 6 * record + 3.5 + pattern  # mean of the samples after the steps at 6r+1 ... 6r+6 h
        np.testing.assert_allclose(ds["signal"].values[record], expected, rtol=1e-14)
