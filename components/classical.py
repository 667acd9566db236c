"""The coarse classical model: dinosaur's primitive equations with Held–Suarez forcing, as a component.

:class:`ClassicalModel` wraps :class:`atmorep_coupler.data.held_suarez.HeldSuarezModel` -- the
model that made the multiformer's training data -- at a coarser resolution (default T15: a 24 x 48
Gaussian grid, 7.5°, 20-minute steps; the training data is T21 on 32 x 64) on its own Gaussian grid.

**Grids.** The published grid is :class:`atmorep_coupler.regrid.GaussianGrid` with the model's
Gauss-Legendre nodes, latitude bounds where sin(latitude) accumulates the quadrature weights (each
band's area is 2π w_j) and north-first rows, so the coupler's conservative maps see the cells the
model's quadrature integrates over. Grid ids: ``0`` pressure levels (the default dataset's, hPa),
``1`` the surface, ``2`` global scalars, ``3`` the levels of the nudging target.

**Exports** (role ``prognostic``: the model's state, on pressure levels; SI units and names of the
default dataset): ``vorticity``, ``divergence``, ``temperature``, ``geopotential``,
``u_component_of_wind``, ``v_component_of_wind`` and ``surface_pressure``, plus the diagnostic
``surface_warming`` (K), the equilibrium-temperature shift in use.

**Slow forcing.** The default dataset is driven by the seasonal cycle (a function of the date) and a
warming ramp that the dataset records as ``co2_equivalent``. The seasonal cycle is computed from
the component's date with the same formulas (:mod:`atmorep_coupler.data.forcings`). The warming is
taken from the optional import ``co2_equivalent`` (ppm; e.g. from the ``co2_scenario`` component),
converted with :func:`~atmorep_coupler.data.forcings.warming_from_co2` -- the inverse of the formula
that produced the series -- and held until the next import. Until a value is imported (or when
nothing is coupled) the model follows its own ``scenario`` (the ramp of
:class:`~atmorep_coupler.data.forcings.ClimateScenario`). ``scenario`` also supplies the climate
sensitivity and reference concentration of the conversion: keep them equal to the producer's.
A +4 K counterfactual is one line: ``ramp: {warming_offset_K: 4.0}`` in the CO2 component's config
(coupled), or ``scenario: {warming_offset_K: 4.0}`` in this component's config (not coupled).

**Nudging.** The optional imports ``nudging_temperature``, ``nudging_u_component_of_wind`` and
``nudging_v_component_of_wind`` (grid 3, levels ``nudging.levels_hPa``) are a target, e.g. the
multiformer's state coarsened to this grid by the coupler (two-way coupling,
``coupling_configs/default.yaml``). From the first import on, the model relaxes toward it with time
scale ``nudging.tau``: temperature and/or (as a pair) the winds, at the sigma levels inside the
target's pressure range widened by ``nudging.reach_hPa``. The target is incremental
(:meth:`HeldSuarezModel.nudging_target`): the target-minus-model difference on the target's levels is
interpolated to sigma and added to the model's state, so the model's own vertical structure between
the levels is kept. A target holds until the next import. Without one the model runs free. The
default dataset's ``coarse_*`` fields are this model relaxed toward the truth the same way
(:mod:`atmorep_coupler.data.coarse_run`; the settings of ``default.yaml``'s two-way coupling).

**Initialisation.** Spun up from rest, the model's weather is unrelated to any truth's (two
independent states differ by about sqrt(2) x the climatological spread), and so is every coupled
model that follows it. With ``initialization.store`` set (an ERA5-layout store, e.g. the truth run),
the last ``initialization.days`` of the spin-up are a nudged ("dynamical") initialisation: at each
store time of that window the store's temperature and winds are regridded bilinearly to the model's
Gaussian grid (winds as vectors), made an incremental nudging target (at the store levels down to
1000 hPa or ``initialization.levels_hPa``, widened by ``reach_hPa``), together with the store's
surface pressure when it has one (``surface_pressure``), and the model relaxes toward it with time
scale ``initialization.tau`` over the steps that lead up to that time. Nudging ends at the start: the
run itself is free unless ``nudging_*`` imports are coupled. The window is read whole (``days`` x
levels x the store's grid), which suits the default data's stores.

Measured on the default data at the default run's start (2000-03-16; area-weighted RMSE against the
truth on its grid, the T15 model regridded conservatively): 500 hPa temperature 1.62 K with the
earlier settings (fields interpolated to sigma, 3-hour time scale, no surface pressure, the sigma
levels above 200 hPa free) and 1.26 K now; 250 hPa 2.90 -> 0.69 K; 200 hPa 5.62 -> 1.15 K;
500 hPa geopotential 325 -> 284 m2 s-2. The T15 truncation alone costs 0.79 K at 500 hPa: a state
inserted to match the truth there returns to the nudged model's error within six hours, since the
model's dynamics (and its spectral filter) remove what T15 cannot carry.

**Time.** The model clock is an integer step count since the scenario epoch, so the component's
start must be a whole number of model steps after it and its ``time_step`` a multiple of the model
step. ``spinup_days`` of spin-up from a seeded rest state run before the start (a Held–Suarez
climate needs about 80 days); ``spinup_from`` begins them from a saved model state instead (the
verification chains forecasts from many start dates this way, so only the first spins up from rest). ``save_state``/``load_state`` hold the model's spectral state, the
nudging target in model space and the import flags, so a restarted run continues bit-identically.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atmorep_coupler.config import Validated
from atmorep_coupler.component.base import Component
from atmorep_coupler.component.clock import to_cftime
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.data import forcings, open_store
from atmorep_coupler.data.default import VARIABLE_ATTRS
from atmorep_coupler.data.forcings import HeldSuarezParameters
from atmorep_coupler.data.held_suarez import FIELDS, NUDGING_FIELDS, HeldSuarezModel, ModelConfig
from atmorep_coupler.errors import ComponentError, ConfigError, DataError
from atmorep_coupler.regrid import LatLonGrid, Regridder
from atmorep_coupler.timeutil import format_duration
from components.forcing import RampConfig

__all__ = ["ClassicalConfig", "ClassicalModel", "InitializationConfig", "NudgingConfig"]

PRESSURE_GRID, SURFACE_GRID, SCALAR_GRID_ID, TARGET_GRID = 0, 1, 2, 3
CO2 = "co2_equivalent"
WARMING = "surface_warming"
TARGET_PREFIX = "nudging_"
#: Plausible ranges that catch unit mistakes in imports (K, m s-1, ppm).
_TARGET_RANGES = {"temperature": (100.0, 400.0), "u_component_of_wind": (-300.0, 300.0),
                  "v_component_of_wind": (-300.0, 300.0)}
_CO2_RANGE = (1.0, 1.0e5)
_SPINUP_CHUNK_DAYS = 10
#: Calendars whose dates are the proleptic Gregorian dates of a store's time axis (after 1582).
_STORE_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
#: The model column at its reference surface pressure: store levels beyond it are not used by default.
_SURFACE_HPA = 1000.0


@dataclass(frozen=True)
class NudgingConfig(Validated):
    """``tau``: relaxation time scale; ``levels_hPa``: pressure levels of the imported target
    (ascending; default: the model's export levels)."""

    tau: _dt.timedelta = _dt.timedelta(hours=6)
    """Relaxation time scale toward the imported target."""
    levels_hPa: tuple[float, ...] | None = None
    """Pressure levels of the imported target, ascending; null: the model's export levels."""
    reach_hPa: float = 100.0
    """Sigma levels up to this far (at 1000 hPa surface pressure) beyond the target's outermost levels are
    nudged too, with the increment of the outermost level."""

    def validate(self) -> None:
        _check_relaxation(self.tau, self.levels_hPa, self.reach_hPa)


def _check_relaxation(tau: _dt.timedelta, levels: tuple[float, ...] | None, reach_hPa: float) -> None:
    """The checks nudging toward a target and nudging toward a store share: a positive time scale, a reach
    >= 0 and, when given, at least two ascending pressure levels."""
    if not (reach_hPa >= 0 and np.isfinite(reach_hPa)):
        raise ConfigError(f"reach_hPa: must be a number >= 0, got {reach_hPa}")
    if tau.total_seconds() <= 0:
        raise ConfigError(f"tau: the relaxation time scale must be positive, got {format_duration(tau)}")
    if levels is not None and (len(levels) < 2 or any(b <= a for a, b in zip(levels, levels[1:]))):
        raise ConfigError(f"levels_hPa: need at least two ascending pressures, got {list(levels)}")


@dataclass(frozen=True)
class InitializationConfig(Validated):
    """Dynamical initialisation: the last ``days`` of the spin-up relax toward a store's temperature and
    winds (e.g. the truth run's), so the run starts from that store's weather, not from an unrelated one."""

    store: Path | None = None
    """ERA5-layout store with temperature, u and v on pressure levels (e.g. the truth run); null: none."""
    days: float = 5.0
    """Length of the nudged end of the spin-up (days before start); the store must hold start - days .. start."""
    tau: _dt.timedelta = _dt.timedelta(hours=1)
    """Relaxation time scale toward the store's state."""
    levels_hPa: tuple[float, ...] | None = None
    """Store pressure levels to nudge toward, ascending; null: every store level down to 1000 hPa."""
    surface_pressure: bool = True
    """Also relax the surface pressure toward the store's (when it has ``surface_pressure``)."""
    reach_hPa: float = 100.0
    """Sigma levels up to this far (at 1000 hPa surface pressure) beyond the store's outermost levels are
    nudged too, with the increment of the outermost level."""

    def validate(self) -> None:
        if not (self.days > 0 and np.isfinite(self.days)):
            raise ConfigError(f"days: must be a number > 0, got {self.days}")
        _check_relaxation(self.tau, self.levels_hPa, self.reach_hPa)


@dataclass(frozen=True)
class _TruthWindow:
    """The store's state over the initialisation window: ``steps[k]`` model steps lead up to the
    ``k``-th store time, whose fields are ``fields[name][k]`` ``[level, lat, lon]`` on the Gaussian grid."""

    steps: np.ndarray
    fields: dict[str, np.ndarray]
    levels: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class ClassicalConfig(ComponentConfig):
    """The component's keys besides the clock (see the module docstring).

    ``resolution``, ``sigma_levels``, ``dt_minutes`` (0: the model's default step),
    ``pressure_levels_hPa`` (exports; default: the default dataset's) and ``held_suarez`` are those
    of :class:`~atmorep_coupler.data.held_suarez.ModelConfig`; ``scenario``: the fallback warming ramp
    and the CO2 conversion constants; ``seed``: the initial state; ``spinup_days``: spin-up before
    ``start``; ``nudging``: relaxation toward an imported target; ``initialization``: a spin-up that
    ends nudged toward a store's state.
    """

    resolution: str = "T15"
    """Spectral truncation, T10 .. T42 (T15: a 24 x 48 Gaussian grid)."""
    sigma_levels: int = ModelConfig.sigma_levels
    """Number of sigma levels of the dynamical core."""
    dt_minutes: float = ModelConfig.dt_minutes
    """Model time step in minutes; 0: a stable default for the resolution."""
    pressure_levels_hPa: tuple[float, ...] = ModelConfig.pressure_levels_hPa
    """Pressure levels of the exports (hPa, ascending)."""
    held_suarez: HeldSuarezParameters = field(default_factory=HeldSuarezParameters)
    """Held-Suarez forcing constants."""
    scenario: RampConfig = field(default_factory=RampConfig)
    """The warming ramp used until a co2_equivalent import arrives, and the CO2 conversion constants."""
    seed: int = 0
    """Seed of the initial state."""
    spinup_days: float = 0.0
    """Days of spin-up from a seeded rest state before ``start`` (a Held-Suarez climate needs about 80)."""
    spinup_from: Path | None = None
    """Begin the spin-up from this model state (``.npz`` of ``HeldSuarezModel.get_state()``, e.g. a spun-up state
    of an earlier run) instead of the seeded rest state; null: the rest state. Its clock is replaced by the spin-up's."""
    nudging: NudgingConfig = field(default_factory=NudgingConfig)
    """Relaxation toward imported nudging_* targets."""
    initialization: InitializationConfig = field(default_factory=InitializationConfig)
    """Nudged end of the spin-up toward a store's state (e.g. the truth), so the run starts from its weather."""

    def validate(self) -> None:
        super().validate()
        try:
            self.model_config()  # a Validated config: checked when built
        except ConfigError as exc:  # ModelConfig names its keys "model.<key>"; here they are top-level
            raise ConfigError(str(exc).removeprefix("model.")) from None
        if not (self.spinup_days >= 0 and np.isfinite(self.spinup_days)):
            raise ConfigError(f"spinup_days: must be a number >= 0, got {self.spinup_days}")
        init = self.initialization
        if init.store is not None:
            if init.days > self.spinup_days:
                raise ConfigError(
                    f"initialization.days: {init.days:g} days exceed spinup_days = {self.spinup_days:g}; the nudged "
                    "initialisation is the end of the spin-up: raise spinup_days or lower initialization.days"
                )
            if self.calendar not in _STORE_CALENDARS:
                raise ConfigError(
                    f"initialization.store: a store's times are proleptic Gregorian dates, but calendar is "
                    f"{self.calendar!r}; use one of {list(_STORE_CALENDARS)} or set initialization.store to null"
                )

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            resolution=self.resolution,
            sigma_levels=self.sigma_levels,
            dt_minutes=self.dt_minutes,
            pressure_levels_hPa=tuple(self.pressure_levels_hPa),
            held_suarez=self.held_suarez,
        )


class ClassicalModel(Component):
    """The coarse Held–Suarez model as a component (module docstring)."""

    config_class = ClassicalConfig

    # ------------------------------------------------------------------------------ construction
    def _initialize(self, config: ClassicalConfig) -> None:
        self._scenario = config.scenario.scenario()
        self._model = HeldSuarezModel(config.model_config(), self._scenario)
        self._whole_steps(self.time_step.total_seconds(), "time_step")  # whole model steps per update
        epoch = to_cftime(self._scenario.epoch, config.calendar, what="scenario.epoch")
        start_index = self._whole_steps((self.start - epoch).total_seconds(), "start (counted from scenario.epoch)")
        spinup = self._whole_steps(config.spinup_days * 86400.0, "spinup_days")
        truth = self._truth_window(config.initialization) if config.initialization.store is not None else None
        self._model.initialize(config.seed, step_index=start_index - spinup)
        if config.spinup_from is not None:
            self._model.set_state({**self._read_state(config.spinup_from), "step_index": start_index - spinup})
        self._spin_up(spinup, truth)

        horizontal = self._model.gaussian_grid
        levels = tuple(config.pressure_levels_hPa)
        self._target_levels = tuple(config.nudging.levels_hPa or levels)
        self._grid_table = {
            PRESSURE_GRID: ComponentGrid(horizontal, levels=levels, level_units="hPa"),
            SURFACE_GRID: ComponentGrid(horizontal),
            SCALAR_GRID_ID: SCALAR_GRID,
            TARGET_GRID: ComponentGrid(horizontal, levels=self._target_levels, level_units="hPa"),
        }
        self._item_list = self._declare_items()
        self._arrays = {
            item.name: np.full(self._grid_table[item.grid].shape, np.nan, dtype=item.dtype) for item in self._item_list
        }
        self._expose(self._grid_table, self._item_list, self._arrays)
        self._target_pending = False
        self._nudging: tuple[dict, dict] | None = None
        self._refresh()

    def _read_state(self, file: Path) -> dict[str, np.ndarray]:
        path = self.resolve_path(file)
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"spinup_from: cannot read a model state from {path} ({exc}); it must be an .npz of "
                            "HeldSuarezModel.get_state()") from None

    def _whole_steps(self, seconds: float, key: str) -> int:
        try:
            return self._model.steps_per(seconds)
        except ConfigError:
            raise ConfigError(
                f"{key}: {format_duration(_dt.timedelta(seconds=seconds))} is not a whole number of model steps "
                f"({self._model.dt_seconds:g} s at {self.config.resolution}); change it or dt_minutes"
            ) from None

    def _spin_up(self, steps: int, truth: _TruthWindow | None) -> None:
        """Step from the seeded rest state to the start, free and then (with ``truth``) nudged toward the
        store's state at each of its times; a progress bar in simulated days."""
        per_day = self._model.steps_per(86400.0)
        free = steps - (int(truth.steps.sum()) if truth else 0)
        with tqdm(total=round(steps / per_day, 3), desc=f"{self.name} spin-up", unit="day",
                  disable=None if steps else True) as bar:
            while free > 0:
                n = min(free, per_day * _SPINUP_CHUNK_DAYS)
                self._model.step(n)
                free -= n
                bar.update(round(n / per_day, 3))
            if truth is None:
                return
            bar.set_postfix_str("nudged toward the store")
            tau = self.config.initialization.tau.total_seconds()
            for k, n in enumerate(truth.steps):
                target, weights = self._model.nudging_target({name: v[k] for name, v in truth.fields.items()},
                                                             truth.levels, reach_hPa=self.config.initialization.reach_hPa)
                self._model.set_nudging(target, tau, weights=weights)
                self._model.step(int(n))
                bar.update(round(n / per_day, 3))
            self._model.set_nudging(None)  # the run itself is free

    def _truth_window(self, init: InitializationConfig) -> _TruthWindow:
        """Read the store's temperature and winds at its times in (start - days, start] and regrid them
        (bilinear; winds as vectors) to the model's Gaussian grid. Checked before any spin-up step."""
        path = self.resolve_path(init.store)
        key = "initialization.store"
        try:
            store = open_store(path)
        except DataError as exc:
            raise DataError(f"{key}: {exc}") from None
        first, last = (np.datetime64(d.strftime("%Y-%m-%dT%H:%M:%S"), "ns")
                       for d in (self.start - _dt.timedelta(days=init.days), self.start))
        times = store.times
        held = times.size and first in times and last in times
        if not held:
            span = f"{str(times[0])[:19]} .. {str(times[-1])[:19]}" if times.size else "no times"
            raise DataError(
                f"{key}: {path} does not cover the initialisation window {str(first)[:19]} .. {str(last)[:19]} "
                f"(initialization.days = {init.days:g} before start; both ends must be store times); it holds "
                f"{span}. Lower initialization.days, move the start, or use a store that holds the window"
            )
        index = np.flatnonzero((times >= first) & (times <= last))
        gaps = np.diff(times[index])
        if np.any(gaps != gaps[0]):
            at = times[index][1:][gaps != gaps[0]][0]
            raise DataError(f"{key}: {path} has a gap in the initialisation window before {str(at)[:19]}; "
                            "its times there must be evenly spaced")
        gap_seconds = float(gaps[0] / np.timedelta64(1, "s"))
        steps = np.full(index.size - 1, self._whole_steps(gap_seconds, f"{key} time step of {path}"))
        levels = self._truth_levels(store, init, key)
        values = {}
        for name in NUDGING_FIELDS:
            try:
                values[name] = store.read(name, time=index[1:], levels=list(levels), units=FIELDS[name])
            except DataError as exc:
                raise DataError(f"{key}: {exc}; initialization needs {list(NUDGING_FIELDS)} at those levels") from None
        regridder = Regridder(LatLonGrid.from_centers(store.latitudes, store.longitudes), self._model.gaussian_grid,
                              "bilinear", progress=False)
        u, v = regridder.apply_vector(values["u_component_of_wind"], values["v_component_of_wind"])
        fields = {"temperature": regridder.apply(values["temperature"].astype(np.float64)),
                  "u_component_of_wind": u, "v_component_of_wind": v}
        if init.surface_pressure and "surface_pressure" in store.dataset:
            ps = store.read("surface_pressure", time=index[1:], units="Pa").astype(np.float64)
            fields["surface_pressure"] = regridder.apply(ps)
        return _TruthWindow(steps, fields, levels)

    @staticmethod
    def _truth_levels(store, init: InitializationConfig, key: str) -> tuple[float, ...]:
        """``initialization.levels_hPa``, or the store's levels down to the model's reference surface pressure."""
        if init.levels_hPa is not None:
            return tuple(float(p) for p in init.levels_hPa)
        levels = tuple(float(p) for p in np.sort(store.levels) if p <= _SURFACE_HPA)
        if len(levels) < 2:
            raise DataError(f"{key}: {store.path} has {len(levels)} pressure levels down to {_SURFACE_HPA:g} hPa "
                            f"({list(store.levels)}); the initialisation needs at least two")
        return levels

    def _declare_items(self) -> list[ExchangeItem]:
        exports = [
            ExchangeItem(name, VARIABLE_ATTRS[name]["standard_name"], VARIABLE_ATTRS[name]["units"], PRESSURE_GRID,
                         "prognostic", intent="out", long_name=VARIABLE_ATTRS[name]["long_name"], dtype="float32")
            for name in FIELDS
        ]
        surface = VARIABLE_ATTRS["surface_pressure"]
        exports.append(ExchangeItem("surface_pressure", surface["standard_name"], surface["units"], SURFACE_GRID,
                                    "prognostic", intent="out", long_name=surface["long_name"], dtype="float32"))
        exports.append(ExchangeItem(
            WARMING, "surface_temperature_anomaly", "K", SCALAR_GRID_ID, "diagnostic",
            long_name="shift of the Held-Suarez surface equilibrium temperature in use",
        ))
        imports = [ExchangeItem(
            CO2, "mole_fraction_of_carbon_dioxide_in_air", VARIABLE_ATTRS[CO2]["units"], SCALAR_GRID_ID, "forcing",
            long_name="CO2-equivalent concentration (sets the surface warming; optional: else the own scenario)",
            valid_range=_CO2_RANGE, optional=True,
        )]
        imports += [
            ExchangeItem(TARGET_PREFIX + name, VARIABLE_ATTRS[name]["standard_name"], VARIABLE_ATTRS[name]["units"],
                         TARGET_GRID, "forcing", long_name=f"nudging target: {VARIABLE_ATTRS[name]['long_name']}",
                         dtype="float32", valid_range=_TARGET_RANGES[name], optional=True)
            for name in NUDGING_FIELDS
        ]
        return exports + imports

    # ------------------------------------------------------------------------------ hooks
    def _write(self, name: str, values: np.ndarray, indices: np.ndarray | None = None) -> None:
        super()._write(name, values, indices)
        if name.startswith(TARGET_PREFIX):
            self._target_pending = True

    def _advance(self, dt: float) -> None:
        self._apply_imports()
        self._model.step(self._model.steps_per(dt))
        self._refresh()

    def _restart_state(self) -> dict[str, np.ndarray]:
        arrays = {f"model/{k}": v for k, v in self._model.get_state().items()}
        arrays["target_pending"] = np.asarray(self._target_pending)
        if self._nudging is not None:
            target, weights = self._nudging
            arrays.update({f"nudging_target/{k}": v for k, v in target.items()})
            arrays.update({f"nudging_weights/{k}": v for k, v in weights.items()})
        return arrays

    def _load_restart_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        def group(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        self._model.set_state(group("model/"))
        self._target_pending = bool(arrays["target_pending"])
        target = group("nudging_target/")
        self._set_nudging((target, group("nudging_weights/")) if target else None)

    # ------------------------------------------------------------------------------ internals
    @property
    def model(self) -> HeldSuarezModel:
        """The wrapped model (read it; step the component, not the model)."""
        return self._model

    def _apply_imports(self) -> None:
        """Turn new imports into the model's warming and nudging target."""
        if self.was_imported(CO2):
            self._model.set_warming(float(forcings.warming_from_co2(self._arrays[CO2][()], self._scenario)))
        if self._target_pending:
            fields = self._complete_targets()
            self._set_nudging(self._model.nudging_target(fields, self._target_levels,
                                                         reach_hPa=self.config.nudging.reach_hPa) if fields else None)
            self._target_pending = False

    def _complete_targets(self) -> dict[str, np.ndarray]:
        """The target fields set completely; a partly set field (or one wind without the other) is an error."""
        fields = {}
        for name in NUDGING_FIELDS:
            values = self._arrays[TARGET_PREFIX + name]
            finite = np.isfinite(values)
            if finite.all():
                fields[name] = values
            elif finite.any():
                raise ComponentError(
                    f"component {self.name!r}: import {TARGET_PREFIX + name!r} is set at {int(finite.sum())} of "
                    f"{values.size} points only; a nudging target needs every point"
                )
        winds = [name for name in fields if name != "temperature"]
        if len(winds) == 1:
            raise ComponentError(
                f"component {self.name!r}: nudging target {TARGET_PREFIX + winds[0]!r} arrived without its partner; "
                "couple both nudging_u_component_of_wind and nudging_v_component_of_wind"
            )
        return fields

    def _set_nudging(self, nudging: tuple[dict, dict] | None) -> None:
        self._nudging = nudging
        if nudging is None:
            self._model.set_nudging(None)
        else:
            self._model.set_nudging(nudging[0], self.config.nudging.tau.total_seconds(), weights=nudging[1])

    def _refresh(self) -> None:
        """Exports from the model's state at the current time."""
        fields = self._model.diagnose("gaussian")
        for name in FIELDS:
            self._arrays[name][...] = fields[name]
        self._arrays["surface_pressure"][...] = fields["surface_pressure"][0]
        days = self._model.time_days
        if self.was_imported(CO2):
            warming = forcings.warming_from_co2(self._arrays[CO2][()], self._scenario)
        else:
            self._arrays[CO2][...] = forcings.co2_equivalent(days, self._scenario)
            warming = forcings.warming(days, self._scenario)
        self._arrays[WARMING][...] = warming
