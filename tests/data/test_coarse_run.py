"""The coarse classical model run beside the truth (data/coarse_run.py, the coarse_* variables of the
default data): it is the classical component nudged as a two-way coupled run nudges it, and it never
sees a future truth."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

pytest.importorskip("dinosaur")

from atmorep_coupler.data import open_store  # noqa: E402
from atmorep_coupler.data.default import DefaultDataConfig, _Models  # noqa: E402
from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig  # noqa: E402
from atmorep_coupler.regrid import LatLonGrid, Regridder  # noqa: E402
from components.classical import ClassicalModel  # noqa: E402

TARGETS = ("temperature", "u_component_of_wind", "v_component_of_wind")
UNITS = {"temperature": "K", "u_component_of_wind": "m s-1", "v_component_of_wind": "m s-1"}
EXPORTS = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind")


def test_coarse_fields_equal_a_separately_stepped_classical_component(tiny_store):
    """The store's coarse_* equal the classical component (components/classical.py, same resolution, nudging
    time scale, levels and reach) stepped from the same seeded rest state and handed, every 3 hours, the
    truth at that time as nudging_* imports mapped conservatively to its grid -- as a two-way coupled run
    hands it the multiformer's state. The truth comes from the store for written times and from the
    truth model re-run for the unwritten spin-up."""
    store = open_store(tiny_store)
    saved = json.loads(store.dataset.attrs["generator_config"])
    config = DefaultDataConfig.tiny_store()
    assert saved["coarse"]["enabled"] and saved["spinup_days"] == config.spinup_days
    coarse, levels = config.coarse, tuple(float(p) for p in store.levels)
    spinup = dt.timedelta(days=config.spinup_days)
    start = dt.datetime(2000, 1, 1) - spinup
    component = ClassicalModel.from_config({
        "start": start.isoformat(), "time_step": "PT1H", "seed": config.seed, "spinup_days": 0,
        "resolution": coarse.resolution, "sigma_levels": coarse.sigma_levels, "pressure_levels_hPa": list(levels),
        "nudging": {"tau": f"PT{coarse.tau_hours:g}H", "levels_hPa": list(coarse.levels_hPa),
                    "reach_hPa": coarse.reach_hPa}})
    gaussian = component.grids[0].horizontal
    fine = LatLonGrid.from_centers(store.latitudes, store.longitudes)
    down = Regridder(fine, gaussian, "conservative_normed", progress=False)
    up = Regridder(gaussian, fine, "conservative_normed", progress=False)
    truth_model = HeldSuarezModel(ModelConfig(resolution=config.resolution, sigma_levels=config.sigma_levels,
                                              pressure_levels_hPa=levels), config.scenario)
    truth_model.initialize(config.seed, step_index=truth_model.steps_per(-spinup.total_seconds()))
    target_index = [levels.index(p) for p in coarse.levels_hPa]
    interval = 3 * 3600.0
    compared = 0
    for k in range(int(spinup.total_seconds() / interval) + store.times.size):
        written = k - int(spinup.total_seconds() / interval)
        if written < 0:
            truth_model.step(truth_model.steps_per(k * interval - spinup.total_seconds()) - truth_model.step_index)
            truth = truth_model.diagnose("latlon")
        else:
            truth = {name: store.read(name, time=[written])[0] for name in TARGETS}
            expected = {name: store.read("coarse_" + name, time=[written])[0].astype(np.float64) for name in EXPORTS}
            got = {name: up.apply(component.get_field(name).values.astype(np.float64)) for name in EXPORTS}
            for name in EXPORTS:
                scale = np.abs(expected[name]).max()
                np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6 * scale,
                                           err_msg=f"{name} at {store.times[written]}")
            compared += 1
        for name in TARGETS:
            component.set_field("nudging_" + name, down.apply(truth[name][target_index].astype(np.float64)),
                                units=UNITS[name])
        component.update_until(component.get_current_time() + interval)
    assert compared == store.times.size == 32
    # and the nudging matters: after 6 days the coarse run is far from a free run of the same model
    free = ClassicalModel.from_config({"start": start.isoformat(), "time_step": "PT1H", "seed": config.seed,
                                       "spinup_days": 0, "pressure_levels_hPa": list(levels)})
    free.update_until(component.get_current_time())
    difference = np.abs(free.get_field("temperature").values - component.get_field("temperature").values).mean()
    assert difference > 0.1  # K
    component.finalize()
    free.finalize()


def test_changing_the_truth_at_t_plus_1_leaves_the_coarse_state_at_t_plus_1_unchanged():
    """Two generator model pairs from the same state; in one, the truth is warmed by 2 K at t + 1 (right after
    its step to t + 1). The coarse state at t + 1 is identical in both (it relaxed toward the truth at t); at
    t + 2 it differs, and by about the amount the relaxation lets through (2 K x 3 h / 6 h ~ 1 K, less where
    the levels are not nudged)."""
    config = DefaultDataConfig.tiny_store()
    pairs = [_Models(config), _Models(config)]
    interval = 3 * 3600.0
    for pair in pairs:
        pair.initialize(config.seed, -2 * interval)
        pair.advance(-interval)
        pair.advance(0.0)  # t
    warmed = pairs[1].truth
    original_step = warmed.step

    def step_then_warm(n):
        original_step(n)
        state, grid = warmed.get_state(), warmed.coords.horizontal
        nodal = grid.to_nodal(state["temperature_variation"]) + 2.0 / warmed._scale["temperature"]
        state["temperature_variation"] = np.asarray(grid.to_modal(nodal), np.float32)
        warmed.set_state(state)

    warmed.step = step_then_warm
    coarse = []
    for pair in pairs:
        pair.advance(interval)  # t + 1
        coarse.append(pair.coarse.diagnose())
    warmed.step = original_step
    for name, values in coarse[0].items():
        np.testing.assert_array_equal(values, coarse[1][name], err_msg=name)
    truth = [pair.truth.diagnose("latlon")["temperature"] for pair in pairs]
    assert (truth[1] - truth[0]).mean() == pytest.approx(2.0, abs=0.05)  # the truth at t + 1 did change
    later = []
    for pair in pairs:
        pair.advance(2 * interval)  # t + 2
        later.append(pair.coarse.diagnose()["coarse_temperature"])
    response = float((later[1] - later[0])[1:5].mean())  # the nudged levels 250 .. 850 hPa
    assert 0.3 < response < 1.5, response
