"""The Held–Suarez model class: regridding, restarts, nudging, counterfactual forcing, resolutions."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dinosaur")

from atmorep_coupler.data.forcings import ClimateScenario  # noqa: E402
from atmorep_coupler.data.held_suarez import FIELDS, HeldSuarezModel, ModelConfig  # noqa: E402
from atmorep_coupler.errors import ConfigError, DataError  # noqa: E402


@pytest.fixture(scope="module")
def model():
    m = HeldSuarezModel(ModelConfig(resolution="T21"))
    m.initialize(seed=3, step_index=-36)
    m.step(36)  # half a day: a baroclinic state with some structure
    return m


def test_grids(model):
    assert model.latitudes.shape == (32,) and model.longitudes.shape == (64,)
    np.testing.assert_allclose(model.latitudes[[0, -1]], [87.1875, -87.1875])
    np.testing.assert_allclose(np.diff(model.longitudes), 5.625)
    assert np.all(np.diff(model.gaussian_latitudes) < 0)
    assert model.dt_seconds == 1200.0


def test_regridding_conserves_the_global_mean(model):
    """Latitude-longitude area means equal the model's Gaussian-quadrature means."""
    gauss, latlon = model.diagnose("gaussian"), model.diagnose("latlon")
    edges = np.deg2rad(90.0 - 180.0 * np.arange(33) / 32)
    area = -np.diff(np.sin(edges))
    w = model.gaussian_weights
    for name in (*FIELDS, "surface_pressure"):
        assert gauss[name].shape[-2:] == (32, 64) and latlon[name].shape[-2:] == (32, 64)
        g = (gauss[name].astype(np.float64).mean(-1) * w).sum(-1) / w.sum()
        r = (latlon[name].astype(np.float64).mean(-1) * area).sum(-1) / area.sum()
        scale = np.abs(gauss[name]).max()
        np.testing.assert_allclose(r, g, atol=2e-6 * scale, err_msg=name)


def test_restart_is_exact_and_independent_of_chunking(model):
    start = model.get_state()
    model.step(12)
    direct = model.diagnose()
    model.set_state(start)
    model.step(5)
    model.step(7)
    chunked = model.diagnose()
    assert model.step_index == int(start["step_index"]) + 12
    for name in direct:
        np.testing.assert_array_equal(chunked[name], direct[name], err_msg=name)
    model.set_state(start)


def test_physical_ranges(model):
    d = model.diagnose()
    assert all(np.isfinite(v).all() for v in d.values())
    assert 180.0 < d["temperature"].min() and d["temperature"].max() < 330.0
    assert 95_000 < d["surface_pressure"].min() and d["surface_pressure"].max() < 105_000
    # hydrostatic: geopotential grows as pressure falls (levels are ascending hPa)
    assert np.all(np.diff(d["geopotential"], axis=0) < 0)
    assert np.abs(d["u_component_of_wind"]).max() < 100.0


@pytest.fixture(scope="module")
def coarse():
    return HeldSuarezModel(ModelConfig(resolution="T10"))


def test_nudging_pulls_toward_the_target(coarse):
    m = coarse
    m.initialize(seed=1)
    m.step(144)
    target = m.get_state()  # a developed state two days in
    m.initialize(seed=2)
    start = m.get_state()  # rest

    def distance_after_one_day(tau):
        m.set_state(start)
        m.set_nudging(target if tau else None, tau)
        m.step(72)
        state = m.get_state()
        return {
            k: np.abs(state[k] - target[k]).sum() / np.abs(target[k]).sum()
            for k in ("vorticity", "divergence", "temperature_variation")
        }

    free, nudged = distance_after_one_day(None), distance_after_one_day(2 * 3600.0)
    for k in ("vorticity", "temperature_variation"):
        assert nudged[k] < 0.3 * free[k], (k, nudged[k], free[k])
    # divergence is set by fast gravity-wave adjustment, so relaxation pulls it less
    assert nudged["divergence"] < 0.7 * free["divergence"]
    with pytest.raises(ConfigError, match="nudging time scale must be positive"):
        m.set_nudging(target, -1.0)
    m.set_nudging(None)


def test_counterfactual_warming_warms_the_lower_troposphere(coarse):
    runs = {}
    for offset in (0.0, 10.0):
        m = (
            coarse
            if offset == 0.0
            else HeldSuarezModel(coarse.config, ClimateScenario(warming_offset_K=offset))
        )
        m.initialize(seed=0)
        m.step(144)  # 2 days of relaxation toward Teq
        runs[offset] = m.diagnose()["temperature"][-1]  # 1000 hPa
    assert 1.0 < float((runs[10.0] - runs[0.0]).mean()) < 10.0


def test_coarse_resolution_and_seeds(coarse):
    with pytest.raises(DataError, match="no state"):
        HeldSuarezModel(ModelConfig(resolution="T10", pressure_levels_hPa=(500.0, 850.0))).diagnose()
    m = coarse
    assert m.dt_seconds == 1200.0
    m.initialize(seed=0)
    a = m.get_state()
    m.initialize(seed=0)
    np.testing.assert_array_equal(m.get_state()["log_surface_pressure"], a["log_surface_pressure"])
    m.initialize(seed=1)
    assert not np.array_equal(m.get_state()["log_surface_pressure"], a["log_surface_pressure"])
    d = m.diagnose("latlon")
    assert d["temperature"].shape == (7, 16, 32)
    with pytest.raises(DataError, match="shape"):
        HeldSuarezModel(ModelConfig(resolution="T21")).set_state(a)


def test_bad_configuration():
    with pytest.raises(ConfigError, match="'X21'"):
        ModelConfig(resolution="X21").validate()
    with pytest.raises(ConfigError, match="strictly increasing"):
        ModelConfig(pressure_levels_hPa=(850.0, 500.0)).validate()
    assert ModelConfig(resolution="T42").time_step_minutes == 10.0
