"""``Component``: the native component layer, and through :class:`~.bmi.BmiAdapter` the Basic Model Interface.

Every Earth-system component of the project (the AtmoRep multiformer, the dinosaur classical model,
the forcing data components) derives from :class:`Component` and implements two hooks:

=========================  ============================================================================
``_initialize(config)``    build grids, items and the state from the typed config (``config_class``)
                           and hand them over with ``self._expose(grids, items, state)``:
                           ``{grid_id: ComponentGrid}``, the :class:`ExchangeItem` list and
                           ``{item name: array}``, the live arrays (shape = grid shape, dtype = item dtype)
``_advance(dt)``           advance the state by ``dt`` seconds *in place*; the clock still reads the
                           start of the step while it runs and moves on when it returns
=========================  ============================================================================

Optional hooks: ``_configure(config)`` (fill in config values, such as a time step, the component
knows itself, before the clock starts); ``_import_error(item, kind, problem)`` (the message of a
refused import: say what the component knows of the field and how to fix it); ``_finalize()``;
``_restart_state()`` / ``_load_restart_state(arrays)`` for internal state that is not an exchange item
(a context window, RNG counters); ``_read(name)`` / ``_write(name, values, indices)`` for state that
does not live in host memory (torch on a GPU). ``partial_steps = True`` lets ``update_until`` end with a
shorter last step (data components can evaluate any time exactly); without it an off-step target time
is refused.

The native layer lives here once: the lifecycle (``initialize``, ``update``, ``update_until``,
``finalize``, which are also the BMI's control functions), time bookkeeping over a cftime calendar,
fields in and out with unit conversion (pint, via :mod:`atmorep_coupler.units`), NaN and range checks
on imported fields, and ``save_state``/``load_state`` (exact, so a restarted run continues
bit-identically; the file format is :mod:`.restart_file`). The rest of the BMI is :mod:`.bmi`; the
coupling driver holds components by :class:`~.native.NativeComponent`. Unknown names, wrong buffers and
bad imports raise :class:`~atmorep_coupler.errors.ComponentError`.
"""

from __future__ import annotations

import datetime as _dt
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cftime
import numpy as np
import xarray as xr

from atmorep_coupler.component.bmi import BmiAdapter
from atmorep_coupler.component.clock import Clock
from atmorep_coupler.component.items import ComponentGrid, ExchangeItem
from atmorep_coupler.component.restart_file import STATE_FORMAT, RestartState, read_state, write_state
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.config import load_yaml
from atmorep_coupler.errors import ComponentError
from atmorep_coupler.units import convert

__all__ = ["Component"]

_DLPACK_CPU = 1  # DLDeviceType kDLCPU
_TIME_TOLERANCE_S = 1e-6  # dates resolve to microseconds; closer target times are the same time


class Component(BmiAdapter):
    """Base class of all components: BMI facade over a small set of hooks (module docstring)."""

    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig
    partial_steps: ClassVar[bool] = False

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._config: ComponentConfig | None = None
        self._clock: Clock | None = None
        self._config_dir = Path.cwd()
        self._item_map: dict[str, ExchangeItem] = {}
        self._aliases: dict[str, str] = {}
        self._grid_map: dict[int, ComponentGrid] = {}
        self._live: dict[str, Any] = {}
        self._exposed: tuple[dict[int, ComponentGrid], tuple[ExchangeItem, ...], Mapping[str, Any]] | None = None
        self._imported: set[str] = set()

    @classmethod
    def from_config(
        cls, config: str | Path | Mapping | ComponentConfig, *, config_dir: str | Path | None = None,
        origin: str = "<mapping>", prefix: str = "",
    ) -> Component:
        """Build and initialize a component in one call.

        ``config_dir``: the folder relative paths in a mapping config resolve against (a coupling
        driver passes the folder of the file the mapping came from); a file path sets it itself.
        ``origin`` and ``prefix``: the file and key path errors in a mapping config name (a coupling
        driver passes ``components.<id>.config`` of its YAML).
        """
        component = cls()
        if config_dir is not None:
            component._config_dir = Path(config_dir).resolve()
        component._config_source = (origin, prefix)
        component.initialize(config)
        return component

    # ------------------------------------------------------------------ hooks for subclasses
    @abstractmethod
    def _initialize(self, config: ComponentConfig) -> None:
        """Build grids, items and state from the typed config."""

    def _expose(self, grids: Mapping[int, ComponentGrid], items: Sequence[ExchangeItem],
                state: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        """Declare, inside ``_initialize``, the grids by BMI grid id, the exchange items (inputs and outputs)
        and the live array of every item (shape = grid shape, dtype = item dtype): a mapping the component
        keeps (its dict of arrays), or for arrays held in attributes a function returning them
        (``lambda: {"sst": self.sst}``), so that an attribute bound to a new array is noticed. The arrays stay
        the component's: it writes into them in place (``arr[...] = new``), so ``get_value_ptr`` views stay live."""
        self._exposed = (dict(grids), tuple(items), state)

    def _state(self) -> Mapping[str, Any]:
        """The live arrays by item name, as exposed."""
        if self._exposed is None:
            raise ComponentError(f"component {self.name!r}: its state is read before _expose(grids, items, state)")
        state = self._exposed[2]
        return state() if callable(state) else state

    @abstractmethod
    def _advance(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds (one step, or a shorter last one if ``partial_steps``)."""

    def _configure(self, config: ComponentConfig) -> ComponentConfig:
        """Complete the config before the clock is made (e.g. a time step the component knows itself)."""
        return config

    def _finalize(self) -> None:
        """Release resources (files, devices)."""

    def _restart_state(self) -> dict[str, np.ndarray]:
        """Internal arrays beyond the exchange items that a restart needs."""
        return {}

    def _load_restart_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_restart_state` returned."""

    def was_imported(self, name: str) -> bool:
        """Whether input ``name`` has been set (set_value, set_value_at_indices or set_field) since
        initialize; kept across save_state/load_state. Lets optional imports fall back to a default."""
        if self._item_map:  # before registration (inside _initialize) nothing can have been imported
            name = self._item_named(name).name
        return name in self._imported

    def _read(self, name: str) -> np.ndarray:
        """A host array with the values of ``name`` (a live view for host memory)."""
        return self._host_view(name)

    def _write(self, name: str, values: np.ndarray, indices: np.ndarray | None = None) -> None:
        """Write ``values`` (grid-shaped, or flat at ``indices``) into the live state in place."""
        target = self._host_view(name)
        if indices is None:
            np.copyto(target, values.reshape(target.shape), casting="same_kind")
        else:
            np.put(target, indices, values)

    # ------------------------------------------------------------------ native layer: time
    @property
    def name(self) -> str:
        return (self._config.name if self._config is not None else "") or type(self).__name__

    @property
    def config(self) -> ComponentConfig:
        return self._require_config()

    @property
    def start(self) -> cftime.datetime:
        return self._require_clock().start

    @property
    def end(self) -> cftime.datetime | None:
        return self._require_clock().end

    @property
    def time_step(self) -> _dt.timedelta:
        return self._require_clock().time_step

    @property
    def current_datetime(self) -> cftime.datetime:
        """The current model date in the component's calendar."""
        return self._require_clock().now

    def datetime_at(self, time: float) -> cftime.datetime:
        """The date of BMI time ``time`` (seconds since the start)."""
        return self._require_clock().datetime_at(time)

    def step(self, n: int = 1) -> None:
        """Advance ``n`` model time steps."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ComponentError(f"component {self.name!r}: step(n) needs a whole number n >= 0, got {n!r}")
        for _ in range(int(n)):
            self.update()

    def advance_to(self, when: object) -> None:
        """Advance to a date (``datetime``, cftime date or ISO string) of the component's calendar."""
        self.update_until(self._require_clock().seconds_since_start(when))

    # ------------------------------------------------------------------ native layer: fields
    def exchange_items(self) -> tuple[ExchangeItem, ...]:
        """All exchange items (NUOPC-style advertise): name, standard name, units, grid, role."""
        self._require_config()
        return tuple(self._item_map.values())

    @property
    def grids(self) -> dict[int, ComponentGrid]:
        """The component's grids by id; ``.horizontal`` has the bounds and areas for regridding."""
        self._require_config()
        return dict(self._grid_map)

    def grid_of(self, name: str) -> ComponentGrid:
        return self._grid_map[self._item_named(name).grid]

    def get_field(self, name: str, units: str | None = None) -> xr.DataArray:
        """A copy of a field as a labelled array at the current time, optionally converted to ``units``
        (converted values are float64, so a conversion adds no rounding of its own)."""
        item = self._item_named(name)
        grid = self._grid_map[item.grid]
        values = np.array(self._read(item.name), copy=True).reshape(grid.shape)
        out_units = item.units
        if units is not None and units != item.units:
            values = convert(values.astype(np.float64), item.units, units, what=self._var_label(item))
            out_units = units
        attrs = {"units": out_units, "standard_name": item.standard_name, "long_name": item.long_name or item.name}
        if not item.standard_name:  # CF: a variable without a standard name carries none (not its own name)
            del attrs["standard_name"]
        return xr.DataArray(
            values,
            dims=grid.dims,
            coords={**_grid_coords(grid), "time": self.current_datetime},
            name=item.name,
            attrs=attrs,
        )

    def set_field(self, name: str, data: xr.DataArray | np.ndarray, units: str | None = None) -> None:
        """Import a field: dims put into the grid's order, units converted, then checked and written.

        The source units come from ``units`` or else ``data.attrs["units"]``; one of them is required.
        """
        item = self._input_item_named(name)
        grid = self._grid_map[item.grid]
        if isinstance(data, xr.DataArray):
            src_units = units if units is not None else data.attrs.get("units")
            extra = [d for d in data.dims if d not in grid.dims]
            if any(data.sizes[d] != 1 for d in extra) or len(data.dims) - len(extra) != len(grid.dims):
                raise ComponentError(
                    f"{self._var_label(item)}: set_field got dims {dict(data.sizes)}; expected {grid.dims} "
                    f"with sizes {grid.shape} (plus size-1 dims only)"
                )
            values = data.squeeze(extra, drop=True).transpose(*grid.dims).values
        else:
            src_units = units
            values = np.asarray(data)
        if src_units is None:
            raise ComponentError(
                f"{self._var_label(item)}: set_field needs units: pass units=... or set data.attrs['units'] "
                f"(the component's units are {item.units!r})"
            )
        if values.shape != grid.shape:
            raise ComponentError(f"{self._var_label(item)}: set_field got shape {values.shape}, expected {grid.shape}")
        values = convert(np.asarray(values, dtype=np.float64), str(src_units), item.units, what=self._var_label(item))
        self._check_import(item, values)
        self._write(item.name, values)
        self._imported.add(item.name)

    # ------------------------------------------------------------------ restarts
    def save_state(self, path: str | Path) -> Path:
        """Write the clock, every exchange item and the restart hooks' arrays to an ``.npz`` file
        (:mod:`~atmorep_coupler.component.restart_file`)."""
        clock = self._require_clock()
        state = RestartState(clock.elapsed, frozenset(self._imported), {name: self._read(name) for name in self._item_map},
                             self._restart_state())
        return write_state(path, self._state_signature(), state, component=self.name)

    def load_state(self, path: str | Path) -> None:
        """Restore a state written by :meth:`save_state` into this (initialized) component.

        The file must come from the same component class, name, calendar, start, time step and items;
        anything else raises :class:`CheckpointError` naming the file and the mismatch.
        """
        clock = self._require_clock()
        state = read_state(path, self._state_signature(), self._item_map, component=self.name)
        for name, values in state.items.items():
            self._write(name, values)
        self._imported = set(state.imported)
        clock.elapsed = state.elapsed  # first: exports recomputed from the restored state are for its time
        self._load_restart_state(state.extra)

    def _state_signature(self) -> dict[str, Any]:
        """What a state file must share with the component it is loaded into."""
        clock = self._require_clock()
        return {
            "format": STATE_FORMAT,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "name": self.name,
            "start": clock.start.isoformat(),
            "calendar": clock.calendar,
            "time_step": clock.step_seconds,
            "items": {
                name: [item.dtype, list(self._grid_map[item.grid].shape)] for name, item in self._item_map.items()
            },
        }

    # ------------------------------------------------------------------ control (the BMI's and the native layer's)
    def initialize(self, config_file: str | Path | Mapping | ComponentConfig) -> None:
        """Read the YAML config (or take a mapping / config object) and build the component."""
        if isinstance(config_file, self.config_class):
            config = config_file
        else:
            if isinstance(config_file, (str, Path)):
                self._config_dir = Path(config_file).resolve().parent
            origin, prefix = getattr(self, "_config_source", ("<mapping>", ""))
            config = load_yaml(self.config_class, config_file, origin=origin, prefix=prefix)
        self._config = config
        try:
            self._config = config = self._configure(config)
            self._clock = config.make_clock()
            self._initialize(config)
            self._register()
        except BaseException:
            self._reset()  # a half-built component must not look initialized
            raise

    def update(self) -> None:
        """Advance exactly one time step of ``get_time_step()`` seconds."""
        clock = self._require_clock()
        self._advance_by(clock.step_seconds)

    def update_until(self, time: float) -> None:
        """Advance to BMI time ``time``; afterwards ``get_current_time() == time`` exactly.

        Whole steps are taken up to ``time``. What remains (if ``time`` is not a whole number of steps
        away) is one shorter step when ``partial_steps`` is set (exact for data components, which can
        evaluate any time); otherwise the call is refused before anything advances.
        """
        clock = self._require_clock()
        time = float(time)
        now, dt = clock.elapsed, clock.step_seconds
        if time < now - _TIME_TOLERANCE_S:
            raise ComponentError(
                f"component {self.name!r}: update_until({time}) is before the current time {now} s "
                f"({self.current_datetime.isoformat()}); components only move forward (use load_state to go back)"
            )
        n_steps = int(np.floor((time - now) / dt + _TIME_TOLERANCE_S / dt))
        remainder = time - (now + n_steps * dt)
        if remainder > _TIME_TOLERANCE_S and not self.partial_steps:
            raise ComponentError(
                f"component {self.name!r}: update_until({time}) is not a whole number of {dt} s steps after "
                f"{now} s, and this component cannot take a shorter step; ask for a multiple of the time step"
            )
        self._check_end(time)
        for _ in range(n_steps):
            self._advance_by(dt)
        if remainder > _TIME_TOLERANCE_S:
            self._advance_by(time - clock.elapsed)
        clock.elapsed = time

    def finalize(self) -> None:
        """Release resources; the component can be initialized again afterwards."""
        if self._config is not None:
            self._finalize()
        self._reset()

    # ------------------------------------------------------------------ internals
    def resolve_path(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self._config_dir / path

    def _register(self) -> None:
        """Collect grids and items from the hooks and check the state against them."""
        if self._exposed is None:
            raise ComponentError(f"component {self.name!r}: _initialize must call self._expose(grids, items, state)")
        grids, declared, _ = self._exposed
        items: dict[str, ExchangeItem] = {}
        for item in declared:
            if item.name in items:
                raise ComponentError(f"component {self.name!r}: exchange item {item.name!r} is declared twice")
            if item.grid not in grids:
                raise ComponentError(f"component {self.name!r}: item {item.name!r} is on unknown grid {item.grid}")
            items[item.name] = item
        standard = [item.standard_name for item in items.values()]
        self._aliases = {
            item.standard_name: name
            for name, item in items.items()
            if item.standard_name and standard.count(item.standard_name) == 1 and item.standard_name not in items
        }
        self._grid_map, self._item_map = grids, items
        state = self._state()
        self._live = {name: state.get(name) for name in items}
        for name, item in items.items():
            if state.get(name) is None:
                raise ComponentError(f"component {self.name!r}: _expose(state=...) has no array for item {name!r}")
            value = self._read(name)
            shape = grids[item.grid].shape
            if tuple(value.shape) != shape or value.dtype != np.dtype(item.dtype):
                raise ComponentError(
                    f"component {self.name!r}: state of {name!r} is {value.dtype}{tuple(value.shape)}, "
                    f"but the item declares {item.dtype}{shape}"
                )

    def _advance_by(self, dt: float) -> None:
        clock = self._require_clock()
        self._check_end(clock.elapsed + dt)
        self._advance(dt)
        self._finish_advance(dt)

    def _finish_advance(self, dt: float) -> None:
        """After ``_advance(dt)`` (or an equivalent batched step): check the live arrays, move the clock."""
        clock = self._require_clock()
        state = self._state()
        for name, obj in self._live.items():
            if state.get(name) is not obj:
                raise ComponentError(
                    f"component {self.name!r}: _advance replaced the array of {name!r}; write into it in place "
                    "(arr[...] = new) so that get_value_ptr stays live"
                )
        clock.elapsed = clock.elapsed + dt

    def _check_end(self, time: float) -> None:
        clock = self._require_clock()
        if time > clock.end_seconds + _TIME_TOLERANCE_S:
            raise ComponentError(
                f"component {self.name!r}: cannot advance to {clock.datetime_at(time).isoformat()}, after its end "
                f"{clock.end.isoformat()}; raise 'end' in its configuration"
            )

    def _check_import(self, item: ExchangeItem, values: np.ndarray) -> None:
        """Refuse NaN/infinite (unless ``allow_nan``: NaN only) or out-of-range imports (message:
        :meth:`_import_error`)."""
        values = np.asarray(values)
        finite = np.isfinite(values)
        bad = ~finite if not item.allow_nan else np.isinf(values)
        if bad.any():
            flat = np.flatnonzero(bad.reshape(-1))
            what = "infinite" if item.allow_nan else "NaN or infinite"
            problem = f"{flat.size} of {values.size} values are {what} (first at flat index {flat[0]})"
            raise ComponentError(self._import_error(item, "nan", problem))
        if item.valid_range is not None and finite.any():
            low, high = item.valid_range
            checked = values[finite]
            vmin, vmax = float(checked.min()), float(checked.max())
            if vmin < low or vmax > high:
                problem = (f"values span [{vmin:g}, {vmax:g}] {item.units}, outside the valid range "
                           f"[{low:g}, {high:g}]")
                raise ComponentError(self._import_error(item, "range", problem))

    def _import_error(self, item: ExchangeItem, kind: str, problem: str) -> str:
        """The message of a refused import (``kind``: ``"nan"`` or ``"range"``), naming component, field
        and time; subclasses add what they know of the field (where it was trained, the fix)."""
        fix = "fix the producer or its regridding mask" if kind == "nan" else "check the producer's units and data"
        return f"component {self.name!r}: imported field {item.name!r} at {self.current_datetime.isoformat()}: {problem}; {fix}"

    def _host_view(self, name: str) -> np.ndarray:
        value = self._state()[name]
        if isinstance(value, np.ndarray):
            return value
        if _dlpack_device_type(value) == _DLPACK_CPU:
            return np.from_dlpack(value)
        raise NotImplementedError(
            f"component {self.name!r}: {name!r} is a {type(value).__name__} outside host memory; "
            "get_value_ptr cannot return live memory for it (use get_value, which copies)"
        )

    def _require_config(self) -> ComponentConfig:
        if self._config is None:
            raise ComponentError(f"component {type(self).__name__}: call initialize(config_file) first")
        return self._config

    def _require_clock(self) -> Clock:
        self._require_config()
        return self._clock

    def _item_named(self, name: str) -> ExchangeItem:
        self._require_config()
        item = self._item_map.get(name) or self._item_map.get(self._aliases.get(name, ""))
        if item is None:
            raise ComponentError(f"component {self.name!r}: unknown variable {name!r}; known: {sorted(self._item_map)}")
        return item

    def _input_item_named(self, name: str) -> ExchangeItem:
        item = self._item_named(name)
        if not item.is_input:
            raise ComponentError(
                f"{self._var_label(item)}: is an output ({item.role}), not an input; inputs: {list(self.get_input_var_names())}"
            )
        return item

    def _var_label(self, item: ExchangeItem) -> str:
        return f"component {self.name!r}, variable {item.name!r}"


def _dlpack_device_type(value: Any) -> int | None:
    """The DLPack device type of an array (1 = host memory), None when it has none or cannot say."""
    try:
        return int(value.__dlpack_device__()[0])
    except Exception:  # no DLPack support, or a device DLPack cannot describe (torch "meta")
        return None


def _grid_coords(grid: ComponentGrid) -> dict[str, Any]:
    """xarray coordinates of a grid: 1-D latitude/longitude for rectilinear grids, 2-D on (y, x) for curvilinear ones."""
    if grid.horizontal is None:
        return {}
    coords: dict[str, Any] = {}
    if grid.levels:
        coords["level"] = ("level", np.asarray(grid.levels), {"units": grid.level_units})
    if grid.is_rectilinear:
        coords["latitude"] = ("latitude", grid.node_coordinates("y"), {"units": "degrees_north", "standard_name": "latitude"})
        coords["longitude"] = ("longitude", grid.node_coordinates("x"), {"units": "degrees_east", "standard_name": "longitude"})
    else:
        h = grid.horizontal
        coords["latitude"] = (("y", "x"), np.asarray(h.center_lat), {"units": "degrees_north", "standard_name": "latitude"})
        coords["longitude"] = (("y", "x"), np.asarray(h.center_lon), {"units": "degrees_east", "standard_name": "longitude"})
    return coords
