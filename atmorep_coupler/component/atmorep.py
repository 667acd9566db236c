"""``AtmoRepComponent``: a trained multiformer as a step-able Earth-system model component.

**State.** The component keeps the context window of the neighbourhood's ``nt = T·t`` time steps
(ending at the current time) on its global grid, in normalized units, for every field of the model:
the prognostic (predicted) fields once per ensemble member, the input-only fields once. It is read at
``start`` from ``initial_condition`` (an ERA5-layout store, e.g. the training data), with the same
readers, transforms and normalization as the training sampler.

**Step** (``update``). One step is one token time slice of the predicted fields
(``t`` data steps of the training data, 3 h for the default data): the checkpoint records the data's time
step, so ``time_step`` may be left out; a ``time_step`` that differs is refused. The window rolls by one
slice; the new slice of every input-only field is set from its import (below) and the new slice of
every predicted field is hidden (the ``forecast`` masking the model was trained with) and predicted on
a global tiling of overlapping neighbourhoods (:mod:`atmorep_coupler.model.tiling`: no point uncovered, columns wrap across
the dateline, tiles never cross a pole, smooth blending weights, batches of ``tile_batch_size`` tiles,
on ``device``). ``update_until`` lands exactly on whole steps and refuses other times (the ML step
cannot be shortened).

**Imports.** Every input-only field of the checkpoint is an import for the *target* time of the next
step (couple with period = time step and lag 0, so the source has run to the target time first):

- role ``conditioning``: ``coarse_<field>``, the coarse classical model's state, regridded by the
  coupler to this grid (conservatively, as in training: the store's ``coarse_*`` run of
  :mod:`atmorep_coupler.data.coarse_run`, or the truth coarsened by :mod:`atmorep_coupler.data.conditioning`);
- role ``forcing``: the slow climate variables (``sea_surface_temperature``,
  ``toa_incident_solar_radiation``, the global ``co2_equivalent`` on the scalar grid).

An import holds until the next one; stepping before every import was set once raises. Imports are
treated as training treated the field (the checkpoint's ``data`` record, :meth:`NeighbourhoodSampler.record`):
a field whose training data held NaN (ERA5's SST over land) accepts NaN and fills it with the normalized
mean, as training did; NaN in any other field is refused. Values outside a plausible range converted to
the field's units (:func:`atmorep_coupler.units.plausible_range`: accumulations such as ERA5's J m-2
insolation included; fields without one are logged and not checked) are refused. Messages name the
component, field, time, checkpoint and the fix.

**Exports.** ``<field>`` (role ``prognostic``: the ensemble mean at the current time, units of the
training data in UDUNITS spelling) and, BMI having no member axis, one item per ensemble member,
``<field>_member_<k>`` (``diagnostic``, k = 0 .. N-1, on the grid of ``<field>``). A fine-tuned
checkpoint's downscaled fields (``<variable>_fine``, and their members) are exported on a second, finer
grid (:mod:`atmorep_coupler.component.fine_grid`).
Importing a prognostic field (``set_field``/``set_value``, or a write through ``get_value_ptr``)
overwrites the current time of every member before the next step. Exports and imports live in host
memory also when the window and the network are on a GPU, so ``get_value_ptr`` is live either way.

**Ensembles** (``ensemble: {members: N, perturbation: σ}``). With one member the step takes the mean
of the ensemble tail (the best single forecast). With N > 1 each member is its own trajectory and, at
each step, takes one head of the tail: head ``perm[n mod M]`` of a permutation of the M heads drawn
from ``SeedSequence(seed, spawn_key=(1, step))``; ``perturbation`` adds ``σ·N(0, 1)`` (normalized
units, ``SeedSequence(seed, spawn_key=(0, n))``) to member n's initial window. Everything is a pure
function of (seed, step), so ``save_state``/``load_state`` continue bit-identically.

**Zero-shot tasks** on the current window (member 0): :meth:`AtmoRepComponent.interpolate_time`
(hide time slices between visible ones), :meth:`AtmoRepComponent.fill_region` (hide the tokens that
touch a region), and the general :meth:`AtmoRepComponent.predict`.

**Checkpoints** load with ``torch.load(weights_only=True)``; one whose normalization statistics,
fields, levels or grid differ from the configuration (``fields``, ``levels_hPa``, ``grid``) is
refused with :class:`~atmorep_coupler.errors.CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cftime
import numpy as np
import torch
import xarray as xr

from atmorep_coupler.config import Validated
from atmorep_coupler.component.base import Component
from atmorep_coupler.component.fine_grid import FineGrid, fine_heads
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem, member_item
from atmorep_coupler.component.large_scales import CoarseBias, LargeScaleNudging, relax_large_scales
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.data.conditioning import physical_variable
from atmorep_coupler.data.normalization import Normalization, load_normalization, month_position
from atmorep_coupler.data.sampler import NAN_FILL, transform_reader
from atmorep_coupler.data.store import ERA5Store, cf_standard_name, open_store
from atmorep_coupler.errors import CheckpointError, ComponentError, ConfigError, DataError
from atmorep_coupler.model.checkpoint import check_statistics, load_checkpoint, trained_data_step
from atmorep_coupler.model.config import FieldConfig
from atmorep_coupler.model.multiformer import Multiformer, compile_model, load_weights
from atmorep_coupler.model.prediction import Masks, predict_global
from atmorep_coupler.model.tiling import GlobalTiling
from atmorep_coupler.regrid.grids import LatLonGrid
from atmorep_coupler.regrid.harmonics import quadrature_weights
from atmorep_coupler.timeutil import format_duration
from atmorep_coupler.units import plausible_range, udunits

__all__ = ["AtmoRepComponent", "AtmoRepConfig", "EnsembleConfig", "GridShape", "member_item",
           "predict_steps", "step_together"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class EnsembleConfig(Validated):
    """``members``: trajectories; ``perturbation``: std of the initial perturbations (normalized units)."""

    members: int = 1
    """Trajectories; with 1 the step takes the mean of the ensemble tail."""
    perturbation: float = 0.0
    """Standard deviation of the initial perturbations of the members (normalized units)."""

    def validate(self) -> None:
        if self.members < 1:
            raise ConfigError(f"members: must be at least 1, got {self.members}")
        if not (self.perturbation >= 0 and np.isfinite(self.perturbation)):
            raise ConfigError(f"perturbation: must be a finite number >= 0, got {self.perturbation}")


@dataclass(frozen=True)
class GridShape:
    nlat: int
    """Number of latitudes."""
    nlon: int
    """Number of longitudes."""


@dataclass(frozen=True, kw_only=True)
class AtmoRepConfig(ComponentConfig):
    """``checkpoint``: a trainer checkpoint (``.pt``); ``initial_condition``: an ERA5-layout store that
    holds the context window ending at ``start``; ``normalization``: the statistics (default: the
    initial-condition store's; they must be those the checkpoint was trained with). The clock key
    ``time_step`` may be left out of a BMI config file: it is one token time slice of the checkpoint's data.

    ``fields``, ``levels_hPa``, ``grid``: what the run expects of the checkpoint (empty: anything);
    ``tile_overlap``: overlap of neighbouring tiles in grid points (rows, columns); ``tile_stagger``: a
    second pass of tiles offset by half a tile plus half a token (:mod:`atmorep_coupler.model.tiling`);
    ``tile_batch_size``: tiles per forward pass; ``device``: torch device; ``compile``: ``torch.compile``
    the network; ``seed``: ensemble randomness.
    """

    time_step: _dt.timedelta | None = None
    """One token time slice of the checkpoint's training data; null: taken from the checkpoint."""
    checkpoint: Path
    """Trainer checkpoint (``.pt``)."""
    initial_condition: Path
    """ERA5-layout store holding the context window that ends at ``start``."""
    normalization: Path | None = None
    """Normalization statistics; default the initial-condition store's (they must be the training statistics)."""
    fields: tuple[str, ...] = ()
    """Predicted fields the run expects of the checkpoint; empty: anything."""
    levels_hPa: tuple[float, ...] = ()
    """Levels the run expects of every predicted field; empty: anything."""
    grid: GridShape | None = None
    """Grid size the run expects of the checkpoint; null: anything."""
    tile_overlap: tuple[int, int] | None = None
    """Overlap of neighbouring tiles in grid points (rows, columns); default 0 with ``tile_stagger``, else half a neighbourhood."""
    tile_stagger: bool = True
    """Add a second pass of tiles offset by half a tile plus half a token, so that tile and token edges of one pass
    lie inside the other's tokens (see model/tiling.py; measured seams in docs/components.md)."""
    tile_batch_size: int = 16
    """Tiles per forward pass."""
    device: str = "cpu"
    """Torch device of the network and the context window."""
    compile: bool = False
    """``torch.compile`` the network: faster steps after a one-off compilation at the first step (and at the first
    smaller last tile batch); needs a C++ compiler on CPU."""
    seed: int = 0
    """Seed of the ensemble randomness."""
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    """Ensemble trajectories and their initial perturbations."""
    large_scales: LargeScaleNudging = field(default_factory=LargeScaleNudging)
    """Relaxation of the predicted fields' large scales toward their ``coarse_*`` conditioning after each step
    (:mod:`atmorep_coupler.component.large_scales`); off unless ``tau`` is set."""

    def validate(self) -> None:
        super().validate()
        if self.tile_batch_size < 1:
            raise ConfigError(f"tile_batch_size: must be >= 1, got {self.tile_batch_size}")
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"device: {self.device!r} is not a torch device ({exc})") from None


def _datetime64(date: cftime.datetime) -> np.datetime64:
    """A calendar date as ``datetime64`` (day counted from the 1st of its month, so ``360_day``'s
    Feb 30 becomes Mar 2): for token metadata and store look-ups."""
    month = np.datetime64(f"{date.year:04d}-{date.month:02d}-01", "ns")
    offset = _dt.timedelta(days=date.day - 1, hours=date.hour, minutes=date.minute, seconds=date.second,
                           microseconds=date.microsecond)
    return month + np.timedelta64(int(offset.total_seconds() * 1e6), "us")


@dataclass(frozen=True)
class _Step:
    """A step between :meth:`AtmoRepComponent._begin_step` and ``_end_step``: its target time and what
    :func:`~atmorep_coupler.model.prediction.predict_global` needs (every member's window, the hidden new slice, dates, heads)."""

    target: float
    windows: dict[str, torch.Tensor]
    hidden: torch.Tensor
    times: np.ndarray
    heads: list[int | None]


@dataclass(frozen=True)
class _FieldSpec:
    """How one model field maps onto the store, the statistics and the component's items."""

    config: FieldConfig
    variable: str  # canonical store/statistics variable
    spatial: bool  # False for global series (CO2)
    level_index: np.ndarray | None  # into the statistics' levels

    @property
    def name(self) -> str:
        return self.config.name


# --------------------------------------------------------------------------------------- component
class AtmoRepComponent(Component):
    """The multiformer as a component (see the module docstring).

    ``network`` is the model, called as ``network(masked, meta)``; any callable with that signature
    can replace it (the tiling tests use an identity map).
    """

    config_class = AtmoRepConfig

    # ------------------------------------------------------------------------------ construction
    def _configure(self, config: AtmoRepConfig) -> AtmoRepConfig:
        """Read the checkpoint and the initial condition; the time step defaults to the checkpoint's."""
        self.checkpoint_path = path = self.resolve_path(config.checkpoint)
        self.model_config, self._state = load_checkpoint(path)
        self._store = open_store(self.resolve_path(config.initial_condition))
        self._data_step = trained_data_step(path, self._state, self._store.times, str(self._store.path))
        want = _dt.timedelta(seconds=self.model_config.predicted_fields[0].token_size[0] * self._data_step)
        if config.time_step is None:
            return dataclasses.replace(config, time_step=want)
        if abs(config.time_step.total_seconds() - want.total_seconds()) > 1e-6:
            raise ConfigError(
                f"component {self.name!r}: time_step: {format_duration(config.time_step)}, but checkpoint {path} "
                f"predicts one token time slice of {want.total_seconds() / self._data_step:g} data step(s) of "
                f"{format_duration(_dt.timedelta(seconds=self._data_step))} per step; set time_step to "
                f"{format_duration(want)} (in a coupling YAML: components.{self.name}.timestep), or leave it out of "
                "a BMI config file: the checkpoint knows it"
            )
        return config

    def _initialize(self, config: AtmoRepConfig) -> None:
        self.device = torch.device(config.device)
        path, state, store = self.checkpoint_path, self._state, self._store
        del self._state, self._store  # the weights live on in the network only
        norm = load_normalization(self.resolve_path(config.normalization)) if config.normalization else store.normalization
        self._check_checkpoint(path, state, norm, store)
        self._trained = dict(state.get("data", {}).get("fields", {}))  # empty for checkpoints before it was kept
        self.network = self._build_network(path, state)
        self.norm = norm
        self.latitudes, self.longitudes = np.asarray(store.latitudes), np.asarray(store.longitudes)
        self.horizontal = LatLonGrid.from_centers(self.latitudes, self.longitudes)
        self.specs = {f.name: self._field_spec(f, store) for f in self.model_config.fields if f.grid_refinement == 1}
        self.predicted = [s for s in self.specs.values() if s.config.predicted]
        self.inputs = [s for s in self.specs.values() if not s.config.predicted]
        self.slice_steps = self.predicted[0].config.token_size[0]
        self._check_slice_imports(path)
        self.fine = FineGrid.of(path, state, self.model_config, {s.name: s.config for s in self.predicted},
                                self.latitudes, self.longitudes)  # downscaled fields (component/fine_grid.py)
        self.tiling = self._tiling(config)
        self.members = config.ensemble.members
        self._declare(store)
        self._nudged = self._nudging_pairs(path)
        bias = config.large_scales.bias
        self._coarse_bias = None if bias is None or not self._nudged else CoarseBias(
            self.resolve_path(bias), {p.name: tuple(p.config.levels) for p, _ in self._nudged}, self.latitudes)
        self._exported: dict[str, np.ndarray] = {}
        self._window = self._read_window(store)
        self._perturb(config.ensemble.perturbation)
        self._refresh_exports()

    def _tiling(self, config: AtmoRepConfig) -> GlobalTiling:
        """The global tiling of the neighbourhood; tokens of the first predicted field set the stagger."""
        _, ny, nx = self.model_config.neighbourhood
        if config.tile_overlap is not None:
            overlap = tuple(config.tile_overlap)
        else:
            overlap = (0, 0) if config.tile_stagger else (ny // 2, nx // 2)
        token = tuple(self.predicted[0].config.token_size[1:])
        return GlobalTiling(self.latitudes.size, self.longitudes.size, (ny, nx), overlap, token,
                            stagger=config.tile_stagger)

    def _check_slice_imports(self, path: Path) -> None:
        """One step is one token time slice of ``t`` data steps; an import is one instant. With ``t > 1``
        the network was trained on ``t`` distinct times of every input-only field per slice, which one
        import cannot supply, so such a checkpoint is refused rather than fed a broadcast."""
        if self.slice_steps > 1 and self.inputs:
            raise ConfigError(
                f"{path}: predicted fields have tokens of {self.slice_steps} time steps, so one component step spans "
                f"{self.slice_steps} data steps, but input-only fields {[s.name for s in self.inputs]} are imported "
                "once per step and the network was trained on a distinct value at each data step; use a checkpoint "
                "whose predicted fields have token time size 1 (token_size: [1, y, x])"
            )

    def _check_checkpoint(self, path: Path, state: dict, norm: Normalization, store: ERA5Store) -> None:
        """Refuse a checkpoint that does not fit the statistics, the data or the configuration."""
        config, model = self.config, self.model_config
        check_statistics(path, state, norm, store.latitudes, store.longitudes, str(store.path))
        predicted = [f.name for f in model.predicted_fields if f.grid_refinement == 1]
        if config.fields and sorted(config.fields) != sorted(predicted):
            raise CheckpointError(
                f"{path}: predicts fields {predicted}, but the configuration expects {list(config.fields)}; "
                "use the matching checkpoint or change 'fields'"
            )
        for f in model.predicted_fields:
            if f.grid_refinement > 1:  # a downscaled field: component/fine_grid.py checks it
                continue
            if config.levels_hPa and tuple(float(p) for p in f.levels) != tuple(config.levels_hPa):
                raise CheckpointError(
                    f"{path}: field {f.name!r} has levels {list(f.levels)} hPa, but the configuration expects "
                    f"{list(config.levels_hPa)}; use the matching checkpoint or change 'levels_hPa'"
                )
        store_grid = (store.latitudes.size, store.longitudes.size)
        if config.grid is not None and (config.grid.nlat, config.grid.nlon) != store_grid:
            raise CheckpointError(
                f"{path}: trained on a {store_grid[0]}x{store_grid[1]} grid, but the configuration expects "
                f"{config.grid.nlat}x{config.grid.nlon}; use the matching checkpoint or change 'grid'"
            )

    def _build_network(self, path: Path, state: dict) -> Multiformer:
        network = Multiformer(self.model_config)
        load_weights(network, state["model"], path)
        network = network.to(self.device).eval()
        return compile_model(network) if self.config.compile else network

    def _field_spec(self, f: FieldConfig, store: ERA5Store) -> _FieldSpec:
        var = store.resolve(f.variable)
        store.check_units(var, statistics=self.norm)  # what training checked, checked again here
        spatial = var in self.norm.dataset.attrs["spatial_variables"]
        if f.predicted and not spatial:
            raise CheckpointError(f"field {f.name!r}: a predicted field must be gridded, {var!r} is a series")
        level_index = self.norm.level_index(f.levels) if f.levels else None
        return _FieldSpec(f, var, spatial, level_index)

    # ------------------------------------------------------------------------------ items and grids
    def _declare(self, store: ERA5Store) -> None:
        grids: dict[tuple, int] = {}
        self._grid_table: dict[int, ComponentGrid] = {}

        def grid_id(levels: tuple[float, ...], scalar: bool = False) -> int:
            key = ("scalar",) if scalar else levels
            if key not in grids:
                grids[key] = len(grids)
                self._grid_table[grids[key]] = SCALAR_GRID if scalar else ComponentGrid(self.horizontal, levels=levels)
            return grids[key]

        items: list[ExchangeItem] = []
        for spec in self.predicted:
            levels = tuple(spec.config.levels)
            attrs = dict(store.dataset[spec.variable].attrs)
            common = dict(standard_name=cf_standard_name(spec.variable, attrs), units=self.trained_units(spec),
                          dtype="float32", valid_range=self._valid_range(spec), grid=grid_id(levels))
            items.append(ExchangeItem(spec.name, role="prognostic", long_name=attrs.get("long_name", spec.name),
                                      **common))
            items += [ExchangeItem(member_item(spec.name, k), role="diagnostic",
                                   long_name=f"ensemble member {k} of {spec.name}", **common)
                      for k in range(self.members)]
        for spec in self.inputs:
            attrs = dict(store.dataset[spec.variable].attrs)
            coarse = self.is_conditioning(spec)
            long_name = attrs.get("long_name", spec.variable)
            items.append(ExchangeItem(
                spec.name, cf_standard_name(spec.variable, attrs) or cf_standard_name(physical_variable(spec.variable)),
                self.trained_units(spec),
                grid_id(tuple(spec.config.levels), scalar=not spec.spatial),
                "conditioning" if coarse else "forcing",
                long_name=f"coarse classical model state: {long_name}" if coarse else long_name,
                dtype="float32", valid_range=self._valid_range(spec), allow_nan=self.fills_missing(spec),
            ))
        self._item_list = items
        self._arrays = {item.name: np.zeros(self._grid_table[item.grid].shape, dtype=np.float32) for item in items}
        self._members = {}  # per predicted field [member, (level,) lat, lon]; the member items are views
        for spec in self.predicted:
            stack = np.zeros((self.members, *self._arrays[spec.name].shape), dtype=np.float32)
            self._members[spec.name] = stack
            self._arrays.update({member_item(spec.name, k): stack[k] for k in range(self.members)})
        for spec in self.inputs:
            self._arrays[spec.name][...] = np.nan  # no data until imported (see was_imported)
        if self.fine is not None:
            fine_items, fine_arrays = self.fine.declare(self._grid_table, {i.name: i for i in items}, self.members)
            self._item_list += fine_items
            self._arrays.update(fine_arrays)
        self._expose(self._grid_table, self._item_list, self._arrays)

    @staticmethod
    def is_conditioning(spec: _FieldSpec) -> bool:
        """The coarse model's state: the store's ``coarse_*`` run, or the truth coarsened (transform ``coarse:T<N>``)."""
        return spec.variable != physical_variable(spec.variable) or (
            (spec.config.transform or "").partition(":")[0] == "coarse")

    def _nudging_pairs(self, path: Path) -> list[tuple[_FieldSpec, _FieldSpec]]:
        """(predicted field, its ``coarse_*`` conditioning on the same levels) for ``large_scales``; empty when off."""
        if self.config.large_scales.tau is None:
            return []
        pairs = [(p, c) for p in self.predicted for c in self.inputs
                 if self.is_conditioning(c) and physical_variable(c.variable) == p.variable
                 and tuple(c.config.levels) == tuple(p.config.levels)]
        if not pairs:
            raise ConfigError(
                f"component {self.name!r}: large_scales.tau is set, but checkpoint {path} has no coarse-model "
                "conditioning field (coarse_<field>) on the levels of a predicted field to relax toward; leave "
                "large_scales.tau null for this checkpoint"
            )
        truncation, (nlat, nlon) = self.config.large_scales.truncation, (self.latitudes.size, self.longitudes.size)
        if truncation >= nlat or truncation > nlon // 2:
            raise ConfigError(
                f"component {self.name!r}: large_scales.truncation: T{truncation} is more than the {nlat}x{nlon} grid "
                f"resolves; use at most T{min(nlat - 1, nlon // 2)} (the default T10 keeps the coarse model's "
                "resolved scales)"
            )
        try:
            quadrature_weights(self.latitudes)
        except DataError as exc:
            raise ConfigError(f"component {self.name!r}: large_scales: {exc}") from None
        return pairs

    # ------------------------------------------------------------------------------ what training did
    def trained_units(self, spec: _FieldSpec) -> str:
        """The units the field was trained in (UDUNITS spelling): the checkpoint's record, else the statistics'."""
        return udunits(self._trained.get(spec.name, {}).get("units") or self.norm.units(spec.variable))

    def fills_missing(self, spec: _FieldSpec) -> bool:
        """Whether NaN in this input is filled as in training: the training data held NaN there and the
        sampler filled it with the normalized mean (for older checkpoints: the statistics say so)."""
        if spec.config.predicted:
            return False
        record = self._trained.get(spec.name)
        if record is None:
            return self.norm.has_missing(spec.variable)
        return bool(record["missing_in_training"]) and record["missing_filled_with"] == NAN_FILL

    def _valid_range(self, spec: _FieldSpec) -> tuple[float, float] | None:
        """The plausible range in the field's units, or None with a logged note saying why none applies."""
        units = self.trained_units(spec)
        bounds, how = plausible_range(physical_variable(spec.variable), units)
        if bounds is None:
            log.info("component %r: field %r (%s, checkpoint %s): imports are not range-checked: %s",
                     self.name, spec.name, units, self.checkpoint_path, how)
        return bounds

    def _import_error(self, item: ExchangeItem, kind: str, problem: str) -> str:
        spec = self.specs.get(item.name)
        if spec is None:
            return super()._import_error(item, kind, problem)
        where = (f"component {self.name!r}: imported field {item.name!r} at {self.current_datetime.isoformat()}: "
                 f"{problem}")
        trained = f"checkpoint {self.checkpoint_path} was trained on {spec.variable!r}"
        if kind == "nan":
            fix = ("fill the producer's gaps, or give the coupling's remap a fallback (remap: {method: ..., "
                   "fallback: [nearest_s2d]}) if the gaps are unmapped cells")
            return f"{where}; {trained} without NaN, so the model has never seen a gap here: {fix}"
        return (f"{where}; {trained} in {item.units!r}: deliver the field in {item.units!r} (set_value takes the "
                "component's units; set_field and the coupler convert from declared units) and check the "
                "producer's values")

    # ------------------------------------------------------------------------------ window
    def window_times(self, elapsed: float | None = None) -> list[cftime.datetime]:
        """Dates of the context window's ``nt`` time steps, ending at BMI time ``elapsed`` (default now)."""
        end = self.get_current_time() if elapsed is None else elapsed
        nt = self.model_config.neighbourhood[0]
        return [self.datetime_at(end - k * self._data_step) for k in range(nt - 1, -1, -1)]

    def _read_window(self, store: ERA5Store) -> dict[str, torch.Tensor]:
        """Normalized window ``[(member,) L, nt, nlat, nlon]`` of every field, ending at ``start``."""
        nt = self.model_config.neighbourhood[0]
        times = np.array([_datetime64(d) for d in self.window_times(0.0)])
        end = store.time_index(times[-1])
        if end < nt - 1 or not np.array_equal(store.times[end - nt + 1:end + 1], times):
            raise DataError(
                f"{store.path}: the initial condition needs {nt} consecutive time steps {times[0]} .. {times[-1]} "
                f"(every {self._data_step:g} s); the store has {store.times[0]} .. {store.times[-1]}"
            )
        window = {}
        for spec in self.specs.values():
            reader = transform_reader(spec.config.transform) if spec.config.transform else ERA5Store.read
            values = reader(store, spec.variable, time=slice(end - nt + 1, end + 1),
                            levels=list(spec.config.levels) or None)
            x = self._normalize(spec, values, month_position(self.window_times(0.0)), where=str(store.path))
            window[spec.name] = x.expand(self.members, *x.shape).clone() if spec.config.predicted else x
        return window

    def _normalize(self, spec: _FieldSpec, values: np.ndarray, months: np.ndarray, where: str) -> torch.Tensor:
        """Physical ``[time, (level), (lat, lon)]`` -> normalized ``[L, time, nlat, nlon]`` on the device;
        NaN is an error in predicted fields and the normalized mean (0) in input-only ones (as in training)."""
        x = self.norm.normalize(spec.variable, values, np.asarray(months), spec.level_index,
                                mode=spec.config.normalization)
        if not spec.spatial:
            x = np.broadcast_to(x[:, None, None], (x.shape[0], self.latitudes.size, self.longitudes.size))
        x = x if spec.config.levels else x[:, None]
        if np.isnan(x).any():
            if spec.config.predicted:
                raise DataError(f"{where}: predicted field {spec.name!r} has NaN; predicted fields must be complete")
            x = np.nan_to_num(x, nan=0.0)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2, 3))).to(self.device)

    def _denormalize(self, spec: _FieldSpec, x: torch.Tensor, months: np.ndarray) -> np.ndarray:
        """Normalized ``[L, time, nlat, nlon]`` -> physical ``[time, (level), lat, lon]`` float32."""
        values = x.detach().cpu().numpy().transpose(1, 0, 2, 3)
        values = values if spec.config.levels else values[:, 0]
        return self.norm.denormalize(spec.variable, values, np.asarray(months), spec.level_index,
                                     mode=spec.config.normalization)

    def _perturb(self, sigma: float) -> None:
        if sigma <= 0:
            return
        for n in range(self.members):
            rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(0, n)))
            for spec in self.predicted:
                w = self._window[spec.name][n]
                noise = rng.standard_normal(tuple(w.shape), dtype=np.float32)
                w += sigma * torch.from_numpy(noise).to(w.device)

    def _refresh_exports(self, elapsed: float | None = None) -> None:
        """Exports = the last time step of the window (at BMI time ``elapsed``, default now),
        de-normalized; the prognostic export is the mean over members."""
        month = month_position([self.datetime_at(self.get_current_time() if elapsed is None else elapsed)])
        for spec in self.predicted:
            window = self._window[spec.name]
            members = np.stack([self._denormalize(spec, window[n, :, -1:], month)[0] for n in range(self.members)])
            self._members[spec.name][...] = members
            self._arrays[spec.name][...] = members.mean(axis=0)
            self._exported[spec.name] = self._arrays[spec.name].copy()
        if self.fine is not None:
            self._refresh_fine(elapsed)

    def _refresh_fine(self, elapsed: float | None = None) -> None:
        """The downscaled exports at BMI time ``elapsed`` (default now) from the current window
        (component/fine_grid.py)."""
        end = self.get_current_time() if elapsed is None else elapsed
        nt = self.model_config.neighbourhood[0]
        windows = {**self._member_windows(), **self.fine.windows(self.members, nt, self.device)}
        hidden, targets = self.fine.masks(nt, *self.tiling_shape)
        times = np.array([_datetime64(d) for d in self.window_times(end)])
        heads = fine_heads(self.config.seed, round(end / self.get_time_step()), self.members,
                           self.model_config.ensemble_size)
        predicted, _ = self._predict(windows, hidden, np.broadcast_to(times, (self.members, nt)), heads,
                                     targets=targets)
        for f in self.fine.fields:
            departure = predicted[f.name][:, :, -1].cpu().numpy()  # [member, L, lat, lon] at the current time
            members = self.fine.physical(f, departure, self._members[f.coarse])
            self.fine.members[f.name][...] = members.reshape(self.fine.members[f.name].shape)
            self._arrays[f.name][...] = self.fine.members[f.name].mean(axis=0)

    def _write(self, name: str, values: np.ndarray, indices: np.ndarray | None = None) -> None:
        """An import of a prognostic field sets the current time of every member (see :meth:`_sync`)."""
        super()._write(name, values, indices)
        spec = self.specs.get(name)
        if spec is not None and spec.config.predicted:
            self._members[name][...] = self._arrays[name]

    def _sync(self) -> None:
        """Carry prognostic values changed since the last export (``set_value``, ``set_field`` or writes
        through ``get_value_ptr``) into the current time of every member's window."""
        for spec in self.predicted:
            current = self._arrays[spec.name]
            if not np.array_equal(current, self._exported[spec.name]):
                x = self._normalize(spec, current[None], month_position([self.current_datetime]),
                                    where=f"component {self.name!r}: import {spec.name!r}")
                self._window[spec.name][:, :, -1:] = x
                self._exported[spec.name] = current.copy()

    # ------------------------------------------------------------------------------ stepping
    def _advance(self, dt: float) -> None:
        step = self._begin_step(dt)
        predicted, _ = self._predict(step.windows, step.hidden, step.times, step.heads)
        self._end_step(step, predicted)

    def _begin_step(self, dt: float) -> _Step:
        """Everything of a step before the network: imports checked and normalized, the window rolled
        by one slice; returns what to predict (the new slice of every member's predicted fields)."""
        self._sync()
        # NaN inside an import is legitimate (ERA5's SST is NaN over land; input-only fields read NaN as
        # their normalized mean, as in training), so "never set" is asked of was_imported, not of the values.
        missing = [s.name for s in self.inputs if not self.was_imported(s.name)]
        if missing:
            raise ComponentError(
                f"component {self.name!r}: imports {missing} were never set; couple them (or set_field) before "
                f"stepping from {self.current_datetime.isoformat()}"
            )
        target = self.get_current_time() + dt
        steps, month = self.slice_steps, month_position([self.datetime_at(target)])
        for spec in self.inputs:  # conditioning and forcing at the target time
            new = self._normalize(spec, self._arrays[spec.name][None], month,
                                  where=f"component {self.name!r}: import {spec.name!r}")
            window = self._window[spec.name]
            window.copy_(torch.roll(window, -steps, dims=1))
            window[:, -steps:] = new
        for spec in self.predicted:
            window = self._window[spec.name]
            window.copy_(torch.roll(window, -steps, dims=2))
        hidden = torch.zeros(self.model_config.neighbourhood[0], *self.tiling_shape, dtype=torch.bool)
        hidden[-steps:] = True
        times = np.array([_datetime64(d) for d in self.window_times(target)])
        return _Step(target, self._member_windows(), hidden, np.broadcast_to(times, (self.members, times.size)),
                     self._heads(round(self.get_current_time() / dt)))

    def _end_step(self, step: _Step, predicted: Mapping[str, torch.Tensor]) -> None:
        """Keep the predicted new slice of every member and export the new current time."""
        steps = self.slice_steps
        for spec in self.predicted:
            self._window[spec.name][:, :, -steps:] = predicted[spec.name][:, :, -steps:].to(torch.float32)
        self._relax_large_scales(step.target)
        self._refresh_exports(step.target)

    def _relax_large_scales(self, target: float) -> None:
        """``large_scales``: every member's predicted fields at ``target`` relaxed toward their coarse-model
        imports of that time (:mod:`~atmorep_coupler.component.large_scales`), in physical units."""
        if not self._nudged:
            return
        nudging = self.config.large_scales
        weight = nudging.weight(self.get_time_step())
        months = np.repeat(month_position([self.datetime_at(target)]), self.members)
        for spec, coarse in self._nudged:
            window = self._window[spec.name]  # [member, L, nt, lat, lon]
            state = self._denormalize(spec, window[:, :, -1].transpose(0, 1), months)  # [member, L, lat, lon]
            toward = self._arrays[coarse.name].astype(np.float64)
            if self._coarse_bias is not None:
                toward = toward - self._coarse_bias.at(spec.name, float(months[0]))
            relaxed = relax_large_scales(state, toward, self.latitudes, weight, nudging.truncation)
            x = self._normalize(spec, relaxed, months, where=f"component {self.name!r}: large-scale relaxation")
            window[:, :, -1] = x.transpose(0, 1)

    def _predict(self, windows: Mapping[str, torch.Tensor], hidden: Masks, times: np.ndarray,
                 heads: Sequence[int | None], *, targets: Masks | None = None) -> tuple[dict, dict]:
        """:func:`~atmorep_coupler.model.prediction.predict_global` with this component's network, grids and tiling."""
        return predict_global(self.network, windows, hidden, self.tiling, config=self.model_config,
                              latitudes=self.latitudes, longitudes=self.longitudes, times=times, heads=heads,
                              targets=targets, device=self.device, tile_batch_size=self.config.tile_batch_size,
                              grids=self.fine.grids if self.fine is not None else None)

    @property
    def tiling_shape(self) -> tuple[int, int]:
        return self.tiling.nlat, self.tiling.nlon

    def _member_windows(self, members: slice = slice(None)) -> dict[str, torch.Tensor]:
        """The window of every field for ``members`` ``[B, L, nt, nlat, nlon]`` (input-only fields broadcast)."""
        count = len(range(self.members)[members])
        return {name: (w[members] if self.specs[name].config.predicted else w.expand(count, *w.shape))
                for name, w in self._window.items()}

    def _heads(self, step: int) -> list[int | None]:
        """Tail head of each member at ``step`` (None = the mean of all heads, for a single member)."""
        if self.members == 1:
            return [None]
        rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(1, step)))
        perm = rng.permutation(self.model_config.ensemble_size)
        return [int(perm[n % perm.size]) for n in range(self.members)]

    # ------------------------------------------------------------------------------ zero-shot tasks
    def predict(self, hidden: np.ndarray | None = None, targets: np.ndarray | None = None) -> xr.Dataset:
        """General masked prediction on the current context window of member 0 (not stepping).

        ``hidden``: grid points ``[nt, nlat, nlon]`` (or ``[nlat, nlon]`` for every time) whose tokens the
        model must not see; they are predicted. ``targets``: further points to predict from what the model
        sees. Returns the window's fields (dims ``time, level, lat, lon``, physical units) with predicted
        points replaced by the tail's ensemble mean.
        """
        nt = self.model_config.neighbourhood[0]
        shape = (nt, *self.tiling_shape)

        def as_mask(points: np.ndarray | None, what: str) -> torch.Tensor:
            if points is None:
                return torch.zeros(shape, dtype=torch.bool)
            points = np.asarray(points, dtype=bool)
            try:
                return torch.from_numpy(np.array(np.broadcast_to(points, shape)))
            except ValueError:
                raise ComponentError(f"component {self.name!r}: {what} mask of shape {points.shape} does not "
                                     f"broadcast to the window's {shape} (time, lat, lon)") from None

        self._sync()
        times = self.window_times()
        when = np.array([[_datetime64(d) for d in times]])
        predicted, _ = self._predict(self._member_windows(slice(0, 1)), as_mask(hidden, "hidden"), when, [None],
                                     targets=as_mask(targets, "targets"))
        months = month_position(times)
        data = {}
        for spec in self.predicted:
            values = self._denormalize(spec, predicted[spec.name][0].float(), months)
            item = self._item_named(spec.name)
            dims = ("time", "level", "latitude", "longitude") if spec.config.levels else ("time", "latitude", "longitude")
            attrs = {"units": item.units, "standard_name": item.standard_name} if item.standard_name else {"units": item.units}
            data[spec.name] = (dims, values, attrs)
        grid = self._grid_table[self._item_named(self.predicted[0].name).grid]
        coords = {"time": ("time", times), "latitude": ("latitude", self.latitudes), "longitude": ("longitude", self.longitudes)}
        if grid.levels:
            coords["level"] = ("level", np.asarray(grid.levels), {"units": "hPa"})
        return xr.Dataset(data, coords=coords)

    def interpolate_time(self, slices: Sequence[int] | None = None) -> xr.Dataset:
        """Zero-shot temporal interpolation: re-predict token time slices of the window (default the
        middle one, ``T // 2``) from the slices before and after them, as AtmoRep's
        ``temporal_interpolation`` masking. With the default data's 4 slices of 3 h this interpolates
        ``now - 3 h`` between ``now - 6 h`` and ``now``."""
        T = self.predicted[0].config.num_tokens[0]
        slices = list(slices) if slices is not None else [T // 2]
        if not slices or any(not 0 <= k < T for k in slices):
            raise ComponentError(f"component {self.name!r}: interpolation slices {slices} must lie in [0, {T})")
        hidden = np.zeros((self.model_config.neighbourhood[0], *self.tiling_shape), dtype=bool)
        for k in slices:
            hidden[k * self.slice_steps:(k + 1) * self.slice_steps] = True
        return self.predict(hidden)

    def fill_region(self, region: np.ndarray) -> xr.Dataset:
        """Zero-shot spatial interpolation: hide every token (all times and levels) that touches
        ``region`` (bool ``[nlat, nlon]``) and predict it from the surroundings."""
        region = np.asarray(region, dtype=bool)
        if region.shape != self.tiling_shape:
            raise ComponentError(f"component {self.name!r}: region mask has shape {region.shape}, expected "
                                 f"{self.tiling_shape} (lat, lon)")
        return self.predict(region)

    # ------------------------------------------------------------------------------ restarts
    def _restart_state(self) -> dict[str, np.ndarray]:
        self._sync()
        return {f"window/{name}": w.detach().cpu().numpy() for name, w in self._window.items()}

    def _load_restart_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name, window in self._window.items():
            window.copy_(torch.from_numpy(arrays[f"window/{name}"]).to(window.device))
        self._refresh_exports()

    def _finalize(self) -> None:
        self.network = None
        self._window = {}


def step_together(components: Sequence[AtmoRepComponent]) -> None:
    """One time step of each of ``components`` with shared network calls: the tiles of all their
    windows (every member of every component) go through the first component's network together,
    ``tile_batch_size`` of the first component at a time. Each component steps exactly as its own
    ``update()`` would (same imports, dates, heads and result); e.g. forecasts from many start dates
    made in one batch. The components must share the model, the grid and the tiling."""
    steps = []
    for c in components:
        dt = c.get_time_step()
        c._check_end(c.get_current_time() + dt)
        steps.append((c, c._begin_step(dt)))
    predict_steps(steps)
    for c in components:
        c._finish_advance(c.get_time_step())


def predict_steps(steps: Sequence[tuple[AtmoRepComponent, _Step]]) -> None:
    """The network part of one step of each component, begun with its ``_begin_step``: the tiles of all
    their windows share the first component's network calls, then each component ends its step (the
    clock is the caller's: ``update()`` or :func:`step_together`). Used by :func:`step_together` and by
    runs stepped in lockstep (``verification.two_way``)."""
    if not steps:
        return
    first = steps[0][0]
    for c, _ in steps[1:]:
        same = (c.model_config == first.model_config and c.tiling.tile == first.tiling.tile
                and np.array_equal(c.tiling.origins, first.tiling.origins) and c.tiling_shape == first.tiling_shape)
        if not same:
            raise ComponentError(f"step_together: component {c.name!r} has another model, grid or tiling than "
                                 f"{first.name!r}; only components of one checkpoint and grid step together")
    counts = [len(step.heads) for _, step in steps]
    windows = {name: torch.cat([step.windows[name] for _, step in steps]) for name in first.specs}
    hidden = steps[0][1].hidden
    times = np.concatenate([step.times for _, step in steps])
    heads = [h for _, step in steps for h in step.heads]
    predicted, _ = first._predict(windows, hidden, times, heads)
    offsets = np.cumsum([0, *counts])
    for (c, step), lo, hi in zip(steps, offsets[:-1], offsets[1:]):
        c._end_step(step, {name: values[lo:hi] for name, values in predicted.items()})

