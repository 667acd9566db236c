"""The Held–Suarez model class: regridding, restarts, nudging, counterfactual forcing, resolutions."""

from __future__ import annotations

import dataclasses

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


def test_model_grid_is_the_regrid_gaussian_grid(model):
    """The grid published for regridding has the model's own nodes and quadrature weights."""
    g = model.gaussian_grid
    np.testing.assert_allclose(g.lat, model.gaussian_latitudes, rtol=0, atol=1e-10)
    np.testing.assert_allclose(g.lon, model.gaussian_longitudes, rtol=0, atol=1e-10)
    np.testing.assert_allclose(g.weights, model.gaussian_weights, rtol=1e-12)
    # cells bounded where sin(latitude) accumulates the weights: each band is 2*pi*w wide in area
    np.testing.assert_allclose(g.band_area.sum(axis=1), 2 * np.pi * model.gaussian_weights, rtol=1e-12)
    np.testing.assert_allclose(model.latlon_grid.lat, model.latitudes)
    np.testing.assert_allclose(model.latlon_grid.lon, model.longitudes)


def test_regridding_conserves_area_integrals(model):
    """Conservative regridding (regrid package convention): the area integral over the grids'
    great-circle cell areas is the same on the Gaussian and on the lat-lon grid."""
    gauss, latlon = model.diagnose("gaussian"), model.diagnose("latlon")
    area_g, area_l = model.gaussian_grid.area, model.latlon_grid.area
    assert area_g.sum() == pytest.approx(4 * np.pi, rel=1e-12) and area_l.sum() == pytest.approx(4 * np.pi, rel=1e-12)
    for name in (*FIELDS, "surface_pressure"):
        assert gauss[name].shape[-2:] == (32, 64) and latlon[name].shape[-2:] == (32, 64)
        g = gauss[name].astype(np.float64)
        exact = (model.regrid(g) * area_l).sum(axis=(-2, -1))  # before the float32 cast: round-off only
        scale = np.abs(g).max() * 4 * np.pi
        np.testing.assert_allclose(exact, (g * area_g).sum(axis=(-2, -1)), rtol=1e-12, atol=1e-12 * scale, err_msg=name)
        stored = (latlon[name].astype(np.float64) * area_l).sum(axis=(-2, -1))
        np.testing.assert_allclose(stored, exact, rtol=0, atol=2e-7 * scale, err_msg=name)
    # a constant is kept exactly (FRACAREA weights: rows sum to 1)
    np.testing.assert_allclose(model.regrid(np.full((32, 64), 7.0)), 7.0, rtol=1e-13)


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


def test_pressure_levels_below_ground_are_extrapolated_and_hypsometric(model):
    """A deep low (surface pressure 930 hPa) puts 1000 hPa below ground: the diagnostics extrapolate
    (as ERA5 does) instead of returning NaN, and the 850-1000 hPa and 250-300 hPa thicknesses obey the
    hypsometric equation dz = R T_mean ln(p1/p2) to within the error of a layer-mean temperature."""
    start = model.get_state()
    before = model.diagnose("gaussian")["surface_pressure"]
    modal = np.array(start["log_surface_pressure"])
    modal[0, 0, 0] += np.log(0.93) * np.sqrt(4 * np.pi)  # the l = m = 0 mode is sqrt(4 pi) x the mean
    model.set_state({**start, "log_surface_pressure": modal})
    try:
        d = model.diagnose("gaussian")
    finally:
        model.set_state(start)
    np.testing.assert_allclose(d["surface_pressure"], 0.93 * before, rtol=1e-4)
    assert d["surface_pressure"].max() < 95_000.0
    assert all(np.isfinite(v).all() for v in d.values())
    levels = list(model.config.pressure_levels_hPa)
    z, t = d["geopotential"], d["temperature"]
    for top, bottom in ((250.0, 300.0), (850.0, 1000.0)):
        i, j = levels.index(top), levels.index(bottom)
        expected = 287.04 * 0.5 * (t[i] + t[j]) * np.log(bottom / top)
        np.testing.assert_allclose((z[i] - z[j]).mean(), expected.mean(), rtol=0.03)


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


def test_set_warming_replaces_the_ramp(coarse):
    """An imported warming of 4 K acts exactly like a scenario with a constant +4 K offset."""
    flat = ClimateScenario(warming_rate_K_per_year=0.0)
    offset = HeldSuarezModel(coarse.config, dataclasses.replace(flat, warming_offset_K=4.0))
    imported = HeldSuarezModel(coarse.config, flat)
    imported.set_warming(4.0)
    control = HeldSuarezModel(coarse.config, flat)
    for m in (offset, imported, control):
        m.initialize(seed=0)
        m.step(72)
    t = {name: m.diagnose("gaussian")["temperature"] for name, m in
         (("offset", offset), ("imported", imported), ("control", control))}
    np.testing.assert_allclose(t["imported"], t["offset"], rtol=0, atol=1e-4)
    assert float((t["imported"] - t["control"])[-1].mean()) > 0.2  # and it does warm the surface layer (0.4 K)
    imported.set_warming(None)
    with pytest.raises(ConfigError, match="finite"):
        imported.set_warming(float("nan"))


def _developed_state(m, steps: int) -> tuple[dict, dict]:
    """The model ``steps`` after a rest start (seed 4): its diagnosis on the Gaussian grid and the nudging fields."""
    m.initialize(seed=4)
    m.step(steps)
    d = m.diagnose("gaussian")
    return d, {k: d[k] for k in ("temperature", "u_component_of_wind", "v_component_of_wind")}


def test_nudging_target_from_pressure_levels(coarse):
    """A target built from the model's own pressure-level fields reproduces its sigma-level state
    where the target's levels reach, and is weighted 0 elsewhere."""
    m = coarse
    d, fields = _developed_state(m, steps=144)
    levels = m.config.pressure_levels_hPa
    target, weights = m.nudging_target(fields, levels)
    sigma_hPa = 1000 * np.asarray(m.coords.vertical.centers)
    expected = ((sigma_hPa >= 200) & (sigma_hPa <= 1000)).astype(np.float32)
    for k in ("temperature_variation", "vorticity", "divergence"):
        np.testing.assert_array_equal(weights[k], expected)
    state = m.get_state()
    grid = m.coords.horizontal
    inside = expected.astype(bool)
    t_target = np.asarray(grid.to_nodal(target["temperature_variation"]))[inside]
    t_state = np.asarray(grid.to_nodal(state["temperature_variation"]))[inside]
    assert np.abs(t_target - t_state).max() < 1.5  # K (0.8 K): linear-in-pressure interpolation there and back
    zeta_t = np.asarray(grid.to_nodal(target["vorticity"]))[inside].ravel()
    zeta_s = np.asarray(grid.to_nodal(state["vorticity"]))[inside].ravel()
    assert np.corrcoef(zeta_t, zeta_s)[0, 1] > 0.95
    only_t, w = m.nudging_target({"temperature": d["temperature"][1:5]}, levels[1:5])
    assert set(only_t) == {"temperature_variation"}
    np.testing.assert_array_equal(w["temperature_variation"], ((sigma_hPa >= 250) & (sigma_hPa <= 700)))
    with pytest.raises(DataError, match="pair"):
        m.nudging_target({"u_component_of_wind": d["u_component_of_wind"]}, levels)
    with pytest.raises(DataError, match="shape"):
        m.nudging_target({"temperature": d["temperature"][:3]}, levels)


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


def test_incremental_nudging_converges_to_the_target_on_its_levels(coarse):
    """Inserting the incremental target again and again (what strong relaxation does) converges to a state
    whose diagnosis equals the target at the target's levels; inserting the fields interpolated to sigma
    (``incremental=False``) misses them by the interpolation error. The target is another state's own
    pressure-level fields, surface pressure included (so such a state exists)."""
    m = coarse
    d, fields = _developed_state(m, steps=216)
    levels = m.config.pressure_levels_hPa
    fields["surface_pressure"] = d["surface_pressure"][0]
    m.initialize(seed=5)
    m.step(144)
    start = m.get_state()

    def error_after(inserts: int, incremental: bool) -> dict[str, float]:
        m.set_state(start)
        for _ in range(inserts):
            target, weights = m.nudging_target(fields, levels, incremental=incremental, reach_hPa=100.0)
            state = m.get_state()
            for k, value in target.items():
                w = weights[k].reshape(-1, 1, 1)
                state[k] = (w * value + (1 - w) * state[k]).astype(np.float32)
            m.set_state(state)
        now = m.diagnose("gaussian")
        return {k: float(np.abs(now[k] - d[k])[1:6].max()) for k in ("temperature", "u_component_of_wind")}

    before, plain, converged = error_after(0, True), error_after(1, False), error_after(6, True)
    # measured (max over 250-850 hPa): 2.3 K and 1.7 m/s apart; 0.70 K and 0.22 m/s after the plain
    # insertion; 0.010 K and 0.004 m/s after six incremental ones
    assert before["temperature"] > 1.0 and before["u_component_of_wind"] > 1.0
    assert plain["temperature"] > 0.3
    for k in before:
        assert converged[k] < 0.05 * plain[k], (k, converged, plain)
