"""Dinosaur's primitive equations with a seasonal, warming Held–Suarez forcing, as a steppable model.

One class, :class:`HeldSuarezModel`, used by the default-data generator and by the coarse classical
component (``components/classical.py``). It builds a spectral dynamical core at a triangular
truncation (T10 ... T42 and up), starts from a seeded rest state, advances by any number of steps
through one compiled loop, diagnoses vorticity, divergence, temperature, geopotential, u and v on
pressure levels on its native Gaussian grid or conservatively regridded (:mod:`atmorep_coupler.regrid`)
to a regular latitude-longitude grid, exposes its state as numpy arrays for restarts, and can be
nudged toward a target state (a model state, or fields on pressure levels).

The forcing is Held & Suarez (1994) with the equilibrium temperature of
:func:`.forcings.equilibrium_temperature`: the latitude of maximum heating follows the solar
declination and the surface equilibrium temperature carries a warming ramp. Time enters through the
model clock (step index times dt, days since the scenario epoch), so the same model with another
:class:`.forcings.ClimateScenario` is a counterfactual run. The warming can also be set from outside
(:meth:`HeldSuarezModel.set_warming`), e.g. from a coupled CO2 scenario.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
from dinosaur import (
    coordinate_systems,
    primitive_equations,
    primitive_equations_states,
    scales,
    sigma_coordinates,
    spherical_harmonic,
    time_integration,
    vertical_interpolation,
    xarray_utils,
)

from atmorep_coupler.config import Validated
from atmorep_coupler.data import forcings
from atmorep_coupler.data.cache import cache_dir
from atmorep_coupler.data.forcings import ClimateScenario, HeldSuarezParameters
from atmorep_coupler.data.spectral import gaussian_latitudes, truncation
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

# Compiling the model costs seconds and every generator run, restart and test compiles the same
# programs: keep XLA executables in the user cache unless the user configured a cache already.
if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))

__all__ = ["FIELDS", "HeldSuarezModel", "ModelConfig", "truncation"]

units = scales.units

#: Diagnosed pressure-level fields (ARCO-ERA5 names) and their SI units.
FIELDS = {
    "vorticity": "s-1",
    "divergence": "s-1",
    "temperature": "K",
    "geopotential": "m2 s-2",
    "u_component_of_wind": "m s-1",
    "v_component_of_wind": "m s-1",
}
#: The same units in the spelling of dinosaur's own pint registry.
_PINT_UNITS = {"s-1": "1/s", "K": "K", "m2 s-2": "m**2/s**2", "m s-1": "m/s", "Pa": "Pa"}
_PROGNOSTIC = ("vorticity", "divergence", "temperature_variation", "log_surface_pressure")
# Exponential spectral filter of dinosaur's Held-Suarez example (NeuralGCM), per unit model time.
_FILTER = {"tau": 0.0087504, "order": 1.5, "cutoff": 0.8}
#: Fields a pressure-level nudging target may hold (:meth:`HeldSuarezModel.nudging_target`).
NUDGING_FIELDS = ("temperature", "u_component_of_wind", "v_component_of_wind")
# Pressure -> sigma interpolation of nudging targets: linear in pressure, constant beyond the
# outermost levels (always finite; the levels outside the target's range are not nudged anyway).
_CONSTANT_EXTRAPOLATION = vertical_interpolation.vectorize_vertical_interpolation(
    vertical_interpolation.vertical_interpolation
)
# Sigma -> pressure diagnostics: interpolation linear in log-pressure, linear extrapolation beyond.
_LOG_PRESSURE_INTERPOLATION = vertical_interpolation.vectorize_vertical_interpolation(
    vertical_interpolation.linear_interp_with_linear_extrap
)


@dataclass(frozen=True)
class ModelConfig(Validated):
    """Resolution, vertical levels, time step and output pressure levels."""

    resolution: str = "T21"
    sigma_levels: int = 8
    #: Time step in minutes; 0 picks a stable default for the resolution (20 min at T21).
    dt_minutes: float = 0.0
    pressure_levels_hPa: tuple[float, ...] = (200.0, 250.0, 300.0, 500.0, 700.0, 850.0, 1000.0)
    held_suarez: HeldSuarezParameters = field(default_factory=HeldSuarezParameters)

    def validate(self, path: str = "") -> None:
        truncation(self.resolution)
        levels = np.asarray(self.pressure_levels_hPa)
        if levels.size == 0 or np.any(np.diff(levels) <= 0) or levels[0] <= 0 or levels[-1] > 1100:
            raise ConfigError(
                f"{path or 'model'}.pressure_levels_hPa: need strictly increasing pressures in "
                f"(0, 1100] hPa, got {list(self.pressure_levels_hPa)}"
            )
        if self.sigma_levels < 2:
            raise ConfigError(f"{path or 'model'}.sigma_levels: need at least 2, got {self.sigma_levels}")

    @property
    def time_step_minutes(self) -> float:
        """The configured step, or the default: the largest divisor of 3 h not above
        20 min x 21 / N (20 min at T21 and coarser, 10 min at T42)."""
        if self.dt_minutes > 0:
            return float(self.dt_minutes)
        limit = 20.0 * min(1.0, 21.0 / truncation(self.resolution))
        return float(next(d for d in (20, 18, 15, 12, 10, 9, 6, 5, 4, 3, 2, 1) if d <= limit))


def _gaussian_grid(n: int) -> spherical_harmonic.Grid:
    """dinosaur's quadratic (alias-free) Gaussian grid for truncation T<n> (:func:`.spectral.gaussian_latitudes`)."""
    return spherical_harmonic.Grid.construct(max_wavenumber=n, gaussian_nodes=gaussian_latitudes(n) // 2)


class _SeasonalHeldSuarezForcing(time_integration.ExplicitODE):
    """Held–Suarez relaxation (their eqs. 1-4) toward the time-dependent equilibrium temperature
    of :func:`.forcings.equilibrium_temperature`; time is read from ``state.sim_time``.

    ``warming``: ``None`` (the scenario's ramp) or a pair ``(use, kelvin)`` of traced scalars set by
    :meth:`with_warming`: where ``use`` is non-zero the warming is ``kelvin`` instead of the ramp.
    """

    warming = None

    def __init__(
        self,
        coords,
        physics_specs,
        reference_temperature,
        scenario: ClimateScenario,
        hs: HeldSuarezParameters,
        p0: float,
        day: float,
        kelvin: float,
    ):
        self.coords = coords
        self.scenario = scenario
        self.hs = hs
        self.reference_temperature = reference_temperature
        self.p0, self.day, self.kelvin = p0, day, kelvin
        sigma = coords.vertical.centers
        _, sin_lat = coords.horizontal.nodal_mesh
        self.lat = np.arcsin(sin_lat)
        boundary = np.maximum(0.0, (sigma - hs.sigma_b) / (1.0 - hs.sigma_b))[:, None, None]
        k_f, k_a, k_s = (x / day for x in (hs.k_f_per_day, hs.k_a_per_day, hs.k_s_per_day))
        self.k_v = k_f * boundary
        self.k_t = k_a + (k_s - k_a) * boundary * np.cos(self.lat) ** 4
        self.sigma = sigma[:, None, None]

    def with_warming(self, use, kelvin) -> _SeasonalHeldSuarezForcing:
        """A copy that takes the warming ``kelvin`` instead of the ramp where ``use`` is non-zero."""
        other = copy.copy(self)
        other.warming = (use, kelvin)
        return other

    def explicit_terms(self, state):
        aux = primitive_equations.compute_diagnostic_state_sigma(state=state, coords=self.coords)
        grid = self.coords.horizontal
        velocity_tendency = jax.tree.map(lambda x: -self.k_v * x / grid.cos_lat**2, aux.cos_lat_u)
        temperature = self.reference_temperature[:, None, None] + aux.temperature_variation
        surface_pressure = jnp.exp(grid.to_nodal(state.log_surface_pressure))
        days = state.sim_time / self.day
        shift = forcings.warming(days, self.scenario, xp=jnp)
        if self.warming is not None:
            use, kelvin = self.warming
            shift = jnp.where(use != 0, kelvin, shift)
        t_eq = self.kelvin * forcings.equilibrium_temperature(
            self.lat, self.sigma * surface_pressure / self.p0, days, self.scenario, self.hs, xp=jnp, warming_K=shift
        )
        velocity_tendency = grid.to_modal(velocity_tendency)
        return primitive_equations.State(
            vorticity=grid.curl_cos_lat(velocity_tendency),
            divergence=grid.div_cos_lat(velocity_tendency),
            temperature_variation=grid.to_modal(-self.k_t * (temperature - t_eq)),
            log_surface_pressure=jnp.zeros_like(state.log_surface_pressure),
            sim_time=0.0,
        )


class _Nudging(time_integration.ExplicitODE):
    """Newtonian relaxation of the prognostic fields toward a target state,
    ∂x/∂t = -r (x - x_target); ``rates[field]`` = r = weight / τ per level (0 switches it off)."""

    def __init__(self, target: dict, rates: dict):
        self.target, self.rates = target, rates

    def explicit_terms(self, state):
        relax = {k: -self.rates[k] * (getattr(state, k) - self.target[k]) for k in _PROGNOSTIC}
        return primitive_equations.State(**relax, sim_time=0.0)


class HeldSuarezModel:
    """Held–Suarez primitive-equation model on a Gaussian grid; see the module docstring.

    The clock is ``step_index`` (an integer, negative during spin-up): model time is
    ``step_index * dt`` after the scenario epoch, so restarts and counterfactuals are exact.
    """

    def __init__(self, config: ModelConfig | None = None, scenario: ClimateScenario | None = None):
        self.config = config or ModelConfig()  # checked when built (Validated)
        self.scenario = scenario or ClimateScenario()
        self.truncation = truncation(self.config.resolution)
        self.dt_seconds = 60.0 * self.config.time_step_minutes
        grid = _gaussian_grid(self.truncation)
        self.coords = coordinate_systems.CoordinateSystem(
            horizontal=grid, vertical=sigma_coordinates.SigmaCoordinates.equidistant(self.config.sigma_levels)
        )
        self.physics = primitive_equations.PrimitiveEquationsSpecs.from_si()
        ps = self.physics
        self._day = float(ps.nondimensionalize(1.0 * units.day))
        self._dt = float(ps.nondimensionalize(self.dt_seconds * units.s))
        p0 = float(ps.nondimensionalize(1e5 * units.pascal))
        self._init_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
            coords=self.coords, physics_specs=ps, p0=1e5 * units.pascal, p1=5e3 * units.pascal
        )
        self._ref_temps = np.asarray(aux[xarray_utils.REF_TEMP_KEY])
        orography = primitive_equations.truncated_modal_orography(aux[xarray_utils.OROGRAPHY], self.coords)
        self._nodal_orography = grid.to_nodal(orography)
        self._dynamics = primitive_equations.PrimitiveEquations(self._ref_temps, orography, self.coords, ps)
        self._forcing = _SeasonalHeldSuarezForcing(
            self.coords,
            ps,
            self._ref_temps,
            self.scenario,
            self.config.held_suarez,
            p0,
            self._day,
            float(ps.nondimensionalize(1.0 * units.degK)),
        )
        self._pressure = vertical_interpolation.PressureCoordinates(
            np.asarray(
                [ps.nondimensionalize(p * 100.0 * units.pascal) for p in self.config.pressure_levels_hPa]
            )
        )
        self._scale = {
            name: float(ps.dimensionalize(1.0, units(_PINT_UNITS[u])).magnitude)
            for name, u in {**FIELDS, "surface_pressure": "Pa"}.items()
        }
        self._setup_grids(grid)
        self._init_fn = jax.jit(self._init_fn)
        self._advance = jax.jit(self._advance_fn)
        self._diagnose = jax.jit(self._diagnose_fn)
        self._to_sigma = jax.jit(self._to_sigma_fn, static_argnums=(1, 3))
        self._state = None
        self.step_index = 0
        self.set_nudging(None)
        self.set_warming(None)

    # ------------------------------------------------------------------------------ grids
    def _setup_grids(self, grid: spherical_harmonic.Grid) -> None:
        lon_rad, sin_lat = grid.nodal_axes
        _, weights = spherical_harmonic.get_latitude_nodes(grid.latitude_nodes, "gauss")
        nlat, nlon = grid.latitude_nodes, grid.longitude_nodes
        self.gaussian_latitudes = np.rad2deg(np.arcsin(sin_lat))[::-1].copy()
        self.gaussian_longitudes = np.rad2deg(lon_rad)
        self.gaussian_weights = np.asarray(weights)[::-1].copy()
        #: The model's grid for regridding: the same Gauss-Legendre nodes, cells bounded where
        #: sin(latitude) accumulates the quadrature weights (so band areas are 2π w_j), north first.
        self.gaussian_grid = GaussianGrid(nlat, nlon, lat_order="descending")
        # The regular output grid: nlat bands from the poles, cells centred on 0°, Δλ, ... (ERA5-like).
        edges = 90.0 - 180.0 * np.arange(nlat + 1) / nlat  # descending
        self.latitudes = 0.5 * (edges[:-1] + edges[1:])
        self.longitudes = 360.0 * np.arange(nlon) / nlon
        half = 180.0 / nlon
        self.latlon_grid = LatLonGrid.from_centers(
            self.latitudes,
            self.longitudes,
            lat_bounds=np.stack([edges[:-1], edges[1:]], axis=-1),
            lon_bounds=np.stack([self.longitudes - half, self.longitudes + half], axis=-1),
        )

    @cached_property
    def _latlon_regridder(self) -> Regridder:
        """First-order conservative Gaussian -> lat-lon map (ESMF great-circle cells, FRACAREA), built once."""
        return Regridder(self.gaussian_grid, self.latlon_grid, "conservative_normed", progress=False)

    def regrid(self, field: np.ndarray) -> np.ndarray:
        """Gaussian ``[..., lat (north first), lon]`` -> regular lat-lon, conservatively (float64):
        area integrals with the grids' cell areas are preserved to round-off."""
        return self._latlon_regridder.apply(np.asarray(field, dtype=np.float64))

    # ------------------------------------------------------------------------------ state
    @property
    def time_days(self) -> float:
        """Model time in days since the scenario epoch."""
        return self.step_index * self.dt_seconds / 86400.0

    def steps_per(self, seconds: float) -> int:
        """Number of model steps in ``seconds``; ConfigError unless it is a whole number."""
        n = seconds / self.dt_seconds
        if abs(n - round(n)) > 1e-9:
            raise ConfigError(
                f"interval of {seconds:g} s is not a multiple of the {self.dt_seconds:g} s model step"
            )
        return int(round(n))

    def initialize(self, seed: int, step_index: int = 0) -> None:
        """Rest atmosphere with a 50 hPa surface-pressure bump placed at random by ``seed``."""
        state = self._init_fn(jax.random.PRNGKey(seed))
        self._state = dataclasses.replace(state, sim_time=jnp.float32(step_index * self._dt))
        self.step_index = int(step_index)

    def get_state(self) -> dict[str, np.ndarray]:
        """Prognostic modal arrays plus ``step_index``; feed back to :meth:`set_state`."""
        self._require_state()
        out = {k: np.asarray(getattr(self._state, k)) for k in _PROGNOSTIC}
        out["step_index"] = np.asarray(self.step_index, dtype=np.int64)
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        missing = [k for k in (*_PROGNOSTIC, "step_index") if k not in state]
        if missing:
            raise DataError(f"model state is missing {missing}; expected the keys of get_state()")
        shape = self.coords.modal_shape
        for k in ("vorticity", "divergence", "temperature_variation"):
            if tuple(state[k].shape) != tuple(shape):
                raise DataError(
                    f"model state {k!r} has shape {state[k].shape}, expected {shape} ({self.config.resolution})"
                )
        self.step_index = int(state["step_index"])
        self._state = primitive_equations.State(
            **{k: jnp.asarray(state[k], dtype=jnp.float32) for k in _PROGNOSTIC},
            sim_time=jnp.float32(self.step_index * self._dt),
        )

    def set_nudging(
        self,
        target: dict[str, np.ndarray] | None,
        tau_seconds: float | None = None,
        weights: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Relax toward ``target`` (prognostic arrays as in :meth:`get_state`) on time scale
        ``tau_seconds``; ``None`` switches nudging off. Changing any of them does not recompile.

        ``weights``: per field, a factor on the rate per sigma level (or one number); fields it
        does not name are not nudged and need no target. Default: every field, fully.
        """
        levels, *spectral = self.coords.modal_shape
        shapes = {k: (1 if k == "log_surface_pressure" else levels, *spectral) for k in _PROGNOSTIC}
        if target is None:
            self._nudge_target = None
            self._nudge_rates = {k: np.zeros((shapes[k][0], 1, 1), np.float32) for k in _PROGNOSTIC}
            return
        if not tau_seconds or tau_seconds <= 0:
            raise ConfigError(f"nudging time scale must be positive, got {tau_seconds!r} s")
        weights = {k: 1.0 for k in _PROGNOSTIC} if weights is None else weights
        rate = 1.0 / float(self.physics.nondimensionalize(tau_seconds * units.s))
        rates, goal = {}, {}
        for k, shape in shapes.items():
            w = np.asarray(weights.get(k, 0.0), dtype=np.float64).reshape(-1, 1, 1)
            if w.shape[0] not in (1, shape[0]):
                raise DataError(f"nudging weights of {k!r} have {w.shape[0]} levels; the model has {shape[0]}")
            rates[k] = np.broadcast_to(rate * w, (shape[0], 1, 1)).astype(np.float32)
            if not rates[k].any():
                continue
            if k not in target:
                raise DataError(f"nudging target has no {k!r} but its weight is non-zero; give it or weight it 0")
            if tuple(np.shape(target[k])) != shape:
                raise DataError(f"nudging target {k!r} has shape {np.shape(target[k])}, the model state {shape}")
            goal[k] = jnp.asarray(target[k], dtype=jnp.float32)
        self._nudge_target = goal or None
        self._nudge_rates = rates

    def set_warming(self, kelvin: float | None) -> None:
        """Use a surface warming of ``kelvin`` (K, the ΔT of :func:`.forcings.equilibrium_temperature`)
        from now on instead of the scenario's ramp; ``None`` goes back to the ramp. Does not recompile."""
        if kelvin is not None and not math.isfinite(kelvin):
            raise ConfigError(f"warming must be a finite number of kelvin, got {kelvin!r}")
        self._warming = (np.float32(kelvin is not None), np.float32(0.0 if kelvin is None else kelvin))

    def nudging_target(
        self, fields: dict[str, np.ndarray], levels_hPa, *, reach_hPa: float = 0.0, incremental: bool = True
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(target, weights)`` for :meth:`set_nudging` from fields on pressure levels.

        ``fields``: any of :data:`NUDGING_FIELDS` (temperature alone, the winds as a pair, or all),
        ``[level, lat (north first), lon]`` on the Gaussian grid in SI units, at the ascending
        pressures ``levels_hPa``, and optionally ``surface_pressure`` (Pa, ``[lat, lon]``), which is then
        nudged too and sets the sigma levels' pressures of the target.

        ``incremental`` (default): the *increment* -- target minus the model's own fields at those
        pressures (interpolated as :meth:`diagnose` does) -- is interpolated (linearly in pressure) to the
        sigma levels and added to the model's state, so the model's vertical structure between the
        levels is kept and a target equal to the model's own diagnosis changes nothing. Relaxing toward
        it repeatedly converges to a state whose diagnosis matches the target at its levels (measured on
        the default data: the T15 model's 500 hPa temperature then differs from the truth by its spectral
        truncation, 0.8 K, against 1.3 K when the fields themselves are interpolated, ``incremental=False``).
        Winds become vorticity and divergence. A sigma level is nudged (weight 1) when its pressure at
        1000 hPa surface pressure lies within the target's levels widened by ``reach_hPa`` (beyond them
        the outermost increment holds), and not at all otherwise.
        """
        self._require_state()
        fields = dict(fields)
        surface = fields.pop("surface_pressure", None)
        unknown = sorted(set(fields) - set(NUDGING_FIELDS))
        winds = {"u_component_of_wind", "v_component_of_wind"} & set(fields)
        if unknown or len(winds) == 1 or not fields:
            raise DataError(
                f"nudging fields {sorted(fields)}: expected temperature and/or the pair u_component_of_wind, "
                f"v_component_of_wind{f' (unknown: {unknown})' if unknown else ''}"
            )
        levels = np.asarray(levels_hPa, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 2 or np.any(np.diff(levels) <= 0):
            raise DataError(f"nudging target levels must be at least two ascending pressures, got {list(levels)} hPa")
        shape = (levels.size, *self.gaussian_grid.shape)
        for name, values in fields.items():
            if np.shape(values) != shape:
                raise DataError(f"nudging field {name!r} has shape {np.shape(values)}, expected {shape}")
        # [level, lat (north first), lon] SI -> dinosaur's nodal [level, lon, lat (south first)], nondimensional
        nodal = {
            k: jnp.asarray(np.swapaxes(np.asarray(v, np.float64)[:, ::-1, :], -1, -2) / self._scale[k], jnp.float32)
            for k, v in fields.items()
        }
        state = self._state
        log_ps = None
        if surface is not None:
            ps = np.asarray(surface, np.float64).reshape(self.gaussian_grid.shape)
            nodal_ps = jnp.asarray(ps[::-1, :].T / self._scale["surface_pressure"], jnp.float32)
            log_ps = self.coords.horizontal.to_modal(jnp.log(nodal_ps))[None]
            state = dataclasses.replace(state, log_surface_pressure=log_ps)
        target = {k: np.asarray(v) for k, v in self._to_sigma(nodal, tuple(levels), state, incremental).items()}
        sigma_hPa = 1000.0 * np.asarray(self.coords.vertical.centers)
        inside = ((sigma_hPa >= levels[0] - reach_hPa) & (sigma_hPa <= levels[-1] + reach_hPa)).astype(np.float32)
        weights = {k: inside for k in target}
        if log_ps is not None:
            target["log_surface_pressure"] = np.asarray(log_ps)
            weights["log_surface_pressure"] = np.ones(1, np.float32)
        return target, weights

    def _to_sigma_fn(self, nodal: dict, levels_hPa: tuple[float, ...], state, incremental: bool) -> dict:
        grid = self.coords.horizontal
        pressure = vertical_interpolation.PressureCoordinates(
            np.asarray([self.physics.nondimensionalize(p * 100.0 * units.pascal) for p in levels_hPa])
        )
        surface_pressure = jnp.exp(grid.to_nodal(state.log_surface_pressure))
        if incremental:
            u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
            own = {"temperature": grid.to_nodal(state.temperature_variation) + self._ref_temps[:, None, None],
                   "u_component_of_wind": u, "v_component_of_wind": v}
            log_sigma = jnp.log(pressure.centers[:, None, None] / surface_pressure)
            log_centers = np.log(self.coords.vertical.centers)
            increment = {k: nodal[k] - _LOG_PRESSURE_INTERPOLATION(log_sigma, log_centers, own[k]) for k in nodal}
            on_sigma = vertical_interpolation.interp_pressure_to_sigma(
                increment, pressure, self.coords.vertical, surface_pressure, _CONSTANT_EXTRAPOLATION
            )
            on_sigma = {k: own[k] + on_sigma[k] for k in on_sigma}
        else:
            on_sigma = vertical_interpolation.interp_pressure_to_sigma(
                nodal, pressure, self.coords.vertical, surface_pressure, _CONSTANT_EXTRAPOLATION
            )
        target = {}
        if "temperature" in on_sigma:
            target["temperature_variation"] = grid.to_modal(on_sigma["temperature"] - self._ref_temps[:, None, None])
        if "u_component_of_wind" in on_sigma:
            target["vorticity"], target["divergence"] = spherical_harmonic.uv_nodal_to_vor_div_modal(
                grid, on_sigma["u_component_of_wind"], on_sigma["v_component_of_wind"]
            )
        return target

    def _require_state(self) -> None:
        if self._state is None:
            raise DataError("HeldSuarezModel has no state: call initialize(seed) or set_state() first")

    # ------------------------------------------------------------------------------ stepping
    def _advance_fn(self, state, start_index, n, target, rates, warming):
        equations = time_integration.compose_equations(
            [self._dynamics, self._forcing.with_warming(*warming), _Nudging(target, rates)]
        )
        step = time_integration.step_with_filters(
            time_integration.imex_rk_sil3(equations, self._dt),
            [time_integration.exponential_step_filter(self.coords.horizontal, self._dt, **_FILTER)],
        )

        def body(i, s):
            s = step(s)
            # Time from the integer clock, not accumulated in float32: exact and chunking-independent.
            return dataclasses.replace(s, sim_time=((start_index + i + 1) * self._dt).astype(jnp.float32))

        return jax.lax.fori_loop(0, n, body, state)

    def step(self, n: int) -> None:
        """Advance ``n`` model steps (one compiled loop for every ``n``)."""
        self._require_state()
        target = {
            k: (self._nudge_target or {}).get(k, jnp.zeros_like(getattr(self._state, k))) for k in _PROGNOSTIC
        }
        self._state = self._advance(
            self._state, jnp.int32(self.step_index), jnp.int32(n), target, self._nudge_rates, self._warming
        )
        self.step_index += int(n)

    # ------------------------------------------------------------------------------ diagnostics
    def _diagnose_fn(self, state) -> dict:
        grid = self.coords.horizontal
        u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
        temperature = grid.to_nodal(state.temperature_variation) + self._ref_temps[:, None, None]
        surface_pressure = jnp.exp(grid.to_nodal(state.log_surface_pressure))
        geopotential = primitive_equations.get_geopotential_on_sigma(
            temperature,
            nodal_orography=self._nodal_orography,
            sigma=self.coords.vertical,
            gravity_acceleration=self.physics.gravity_acceleration,
            ideal_gas_constant=self.physics.ideal_gas_constant,
        )
        sigma_fields = {
            "vorticity": grid.to_nodal(state.vorticity),
            "divergence": grid.to_nodal(state.divergence),
            "temperature": temperature,
            "geopotential": geopotential,
            "u_component_of_wind": u,
            "v_component_of_wind": v,
        }
        # Linear in log-pressure (geopotential is then exact for isothermal layers, by the
        # hypsometric equation) and linearly extrapolated below ground as in ERA5; dinosaur's
        # default is linear in pressure and NaN under deep lows (1000 hPa with ps < ~940 hPa).
        log_sigma = jnp.log(self._pressure.centers[:, None, None] / surface_pressure)
        on_pressure = {
            k: _LOG_PRESSURE_INTERPOLATION(log_sigma, np.log(self.coords.vertical.centers), v)
            for k, v in sigma_fields.items()
        }
        out = {k: self._scale[k] * on_pressure[k] for k in FIELDS}
        out["surface_pressure"] = self._scale["surface_pressure"] * surface_pressure
        # dinosaur's nodal layout is [..., lon, lat (south first)] -> [..., lat (north first), lon]
        return {k: jnp.swapaxes(v, -1, -2)[..., ::-1, :] for k, v in out.items()}

    def diagnose(self, grid: str = "latlon") -> dict[str, np.ndarray]:
        """Pressure-level fields ``[level, lat, lon]`` (levels as configured, ascending hPa; latitude
        north first) in SI units (:data:`FIELDS`), plus ``surface_pressure`` [Pa] ``[1, lat, lon]``.
        ``grid``: ``"latlon"`` (regular, cell centres :attr:`latitudes`/:attr:`longitudes`, conservative
        from the Gaussian cells) or ``"gaussian"`` (:attr:`gaussian_latitudes`)."""
        self._require_state()
        if grid not in ("latlon", "gaussian"):
            raise ConfigError(f"diagnose grid must be 'latlon' or 'gaussian', got {grid!r}")
        fields = {k: np.asarray(v) for k, v in self._diagnose(self._state).items()}
        if grid == "latlon":
            fields = {k: self.regrid(v) for k, v in fields.items()}
        return {k: v.astype(np.float32) for k, v in fields.items()}
