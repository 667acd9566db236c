"""Data components for the slow climate variables: prescribed fields, insolation, a CO2 scenario.

They produce forcings for the other components and import nothing. Because each can evaluate its
output at any time exactly (linear interpolation between records, or a formula), they take a
shorter last step in ``update_until`` (``partial_steps = True``) and land exactly on any time.

* :class:`PrescribedField` -- a time series from a zarr store or netCDF file (CF metadata) on the
  file's own grid (regular, Gaussian or curvilinear), linearly interpolated in time; cells that are
  NaN in the data (or zero in ``mask_variable``) are inactive: the published grid carries the mask
  and a static ``<field>_mask`` item exports it (1 = active).
* :class:`Insolation` -- top-of-atmosphere insolation computed on its grid at the current time.
* :class:`CO2Scenario` -- a global scalar (CO2 concentration, or a warming) on the rank-0 grid, from
  a YAML list of ``[date, value]`` pairs, a CSV file or a netCDF/zarr file (interpolated in time), or
  the training data's warming ramp (:mod:`atmorep_coupler.data.forcings`).
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cftime
import numpy as np
import xarray as xr

from atmorep_coupler.component.base import Component
from atmorep_coupler.component.clock import to_cftime
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.config import Validated, check_grid_side
from atmorep_coupler.data import forcings
from atmorep_coupler.errors import ComponentError, ConfigError, DataError, UnitError
from atmorep_coupler.regrid.grids import GaussianGrid, Grid, LatLonGrid
from atmorep_coupler.units import check_data_units, convert, find_implausible

__all__ = [
    "PrescribedField",
    "PrescribedFieldConfig",
    "Insolation",
    "InsolationConfig",
    "GridConfig",
    "CO2Scenario",
    "CO2ScenarioConfig",
    "RampConfig",
]


class _RecordInterpolator:
    """Linear interpolation in time between records read on demand (at most two held in memory).

    ``times`` are seconds since the component's start, strictly increasing. At a record time the
    weight of the neighbour is exactly 0, so the record is returned bit for bit. A single record is
    constant in time.
    """

    def __init__(
        self, times: np.ndarray, read: Callable[[int], np.ndarray], describe: Callable[[float], str], where: str
    ) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self._source_label = where
        self._read = read
        self._describe = describe
        self._cache: dict[int, np.ndarray] = {}

    def _records(self, *indices: int) -> list[np.ndarray]:
        self._cache = {i: self._cache[i] if i in self._cache else self._read(i) for i in indices}
        return [self._cache[i] for i in indices]

    def __call__(self, t: float) -> np.ndarray:
        times = self.times
        if times.size == 1:
            return self._records(0)[0]
        if not times[0] <= t <= times[-1]:
            raise ComponentError(
                f"{self._source_label}: {self._describe(t)} lies outside the records, which span {self._describe(times[0])} "
                f"to {self._describe(times[-1])}; extend the data or shorten the run"
            )
        i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, times.size - 2))
        w = (t - times[i]) / (times[i + 1] - times[i])
        before, after = self._records(i, i + 1)
        if w == 0.0 or w == 1.0:  # exactly a record, bit for bit
            return after if w else before
        return (1.0 - w) * before + w * after


def _record_seconds(dates: Sequence[Any], start: cftime.datetime, *, what: str) -> np.ndarray:
    """Seconds since ``start`` of record dates, read in the component's calendar; must increase."""
    seconds = np.array(
        [(to_cftime(d, start.calendar, what=what) - start).total_seconds() for d in dates], dtype=np.float64
    )
    if seconds.size == 0:
        raise DataError(f"{what}: no records")
    if np.any(np.diff(seconds) <= 0):
        bad = int(np.flatnonzero(np.diff(seconds) <= 0)[0])
        raise DataError(f"{what}: record times must increase strictly; records {bad} and {bad + 1} do not")
    return seconds


def _open_dataset(path: Path) -> xr.Dataset:
    """Open a zarr store (a folder or ``*.zarr``) or a netCDF file lazily, times as cftime dates."""
    if not path.exists():
        raise DataError(f"{path}: file or store not found")
    times = xr.coders.CFDatetimeCoder(use_cftime=True)
    try:
        if path.is_dir() or path.suffix == ".zarr":
            try:  # consolidated metadata when the store has it (one read), else the per-array files
                return xr.open_zarr(path, decode_times=times, chunks=None, consolidated=True)
            except ValueError:
                return xr.open_zarr(path, decode_times=times, chunks=None, consolidated=False)
        return xr.open_dataset(path, decode_times=times, chunks=None)
    except Exception as exc:  # backends raise many types for unreadable files
        raise DataError(f"{path}: cannot open as zarr or netCDF ({exc})") from None


# ---------------------------------------------------------------------------------------- prescribed
@dataclass(frozen=True, kw_only=True)
class PrescribedFieldConfig(ComponentConfig):
    """``path``: zarr or netCDF; ``variable``: its name there (dims ``time, [level,] y, x``).

    ``field``: exported name (default ``variable``); ``units``: exported units (default: the file's
    CF ``units``, converted otherwise); ``mask_variable``: a variable whose non-zero cells are active
    (default: cells finite in the first record); ``fill_value``: value at inactive cells (default NaN,
    the CF convention; masked regridding never reads them).
    """

    path: Path
    """zarr store or netCDF file with the time series (CF metadata)."""
    variable: str
    """Its variable, dims ``time, [level,] y, x``."""
    field: str = ""
    """Exported name; default ``variable``."""
    standard_name: str = ""
    """CF standard name of the export; default the file's (none if the file has none)."""
    units: str = ""
    """Exported units (converted from the file's CF units); default the file's."""
    mask_variable: str | None = None
    """A variable whose non-zero cells are active; default: cells finite in the first record."""
    mask_standard_name: str = "sea_binary_mask"
    """CF standard name of the exported ``<field>_mask`` item."""
    fill_value: float | None = None
    """Value at inactive cells; default NaN (masked regridding never reads them)."""


class PrescribedField(Component):
    """A field read from a zarr/netCDF time series on its own grid, linear in time between records."""

    config_class = PrescribedFieldConfig
    partial_steps = True

    def _initialize(self, config: PrescribedFieldConfig) -> None:
        path = self.resolve_path(config.path)
        self._dataset = _open_dataset(path)
        try:
            self._open_variable(config, path)
        except BaseException:
            self._dataset.close()
            raise

    def _open_variable(self, config: PrescribedFieldConfig, path: Path) -> None:
        ds = self._dataset
        if config.variable not in ds.data_vars:
            raise ConfigError(f"variable: {config.variable!r} is not in {path} (it has {sorted(ds.data_vars)})")
        var = ds[config.variable]
        self._source_label = where = f"{path}: variable {config.variable!r}"
        horizontal, levels, level_units, dims = _layout(ds, var, where)
        self._source = var.transpose(*dims)
        self._standard_name = var.attrs.get("standard_name")
        try:  # present, CF/UDUNITS, fitting the standard name, convertible to the configured units
            self._file_units = check_data_units(var.attrs.get("units"), what=where, standard_name=self._standard_name,
                                                expected=config.units or None)
        except UnitError as exc:
            raise DataError(str(exc)) from None
        self._units = config.units or self._file_units

        first = self._read_raw(0)
        mask = _active_cells(ds, config.mask_variable, first, horizontal.shape, where)
        self._active = np.broadcast_to(mask, first.shape)
        self._component_grid = ComponentGrid(horizontal.with_mask(mask), levels=levels, level_units=level_units)
        dtype = first.dtype if first.dtype.kind == "f" else np.dtype(np.float64)
        self._field = config.field or config.variable
        self._mask_field = f"{self._field}_mask"
        self._item_list = [
            ExchangeItem(
                self._field,
                config.standard_name or var.attrs.get("standard_name", ""),  # a CF name, or none
                self._units,
                0,
                "forcing",
                intent="out",
                long_name=var.attrs.get("long_name", ""),
                dtype=dtype.name,
            ),
            ExchangeItem(
                self._mask_field,
                config.mask_standard_name,
                "1",
                0,
                "static",
                intent="out",
                long_name="1 = active cell",
                dtype=dtype.name,
            ),
        ]
        self._values = np.empty(first.shape, dtype=dtype)
        self._mask_values = self._active.astype(dtype)
        self._expose({0: self._component_grid}, self._item_list,
                     lambda: {self._field: self._values, self._mask_field: self._mask_values})
        self._series = _RecordInterpolator(
            _record_seconds(self._source["time"].values, self.start, what=where),
            self._read_record,
            lambda t: self.datetime_at(t).isoformat(),
            f"component {self.name!r} ({where})",
        )
        self._values[...] = self._series(0.0)

    def _read_raw(self, index: int) -> np.ndarray:
        return np.asarray(self._source.isel(time=index).values)

    def _read_record(self, index: int) -> np.ndarray:
        """One record in the exported units, inactive cells filled; NaN at an active cell is an error."""
        raw = self._read_raw(index)
        bad = self._active & ~np.isfinite(raw)
        if bad.any():
            date = self._source["time"].values[index]
            raise DataError(
                f"{self._source_label}: record {index} ({date}) has {int(bad.sum())} NaN values at active cells "
                f"(first at flat index {int(np.flatnonzero(bad)[0])}); fix the data or give mask_variable"
            )
        implausible = find_implausible(np.where(self._active, raw, np.nan), self.config.field or self.config.variable,
                                       self._file_units, standard_name=self._standard_name)
        if implausible is not None:
            date = self._source["time"].values[index]
            raise DataError(
                f"{self._source_label}: record {index} ({date}) has {implausible[1]:g} {self._file_units}, outside the "
                f"plausible {implausible[2][0]:g} .. {implausible[2][1]:g} {self._file_units}; the data are not in the "
                "units their attribute says: correct the 'units' attribute or convert the data"
            )
        values = convert(raw.astype(np.float64), self._file_units, self._units, what=self._source_label)
        fill = np.nan if self.config.fill_value is None else self.config.fill_value
        return np.where(self._active, values, fill)

    def _advance(self, dt: float) -> None:
        self._values[...] = self._series(self.get_current_time() + dt)

    def _finalize(self) -> None:
        self._dataset.close()


def _layout(ds: xr.Dataset, var: xr.DataArray, where: str) -> tuple[Grid, tuple[float, ...], str, tuple[str, ...]]:
    """The horizontal grid (from the CF coordinates and bounds), the levels and their units, and the
    variable's dims in the component's order ``(time, [level,] y, x)``."""
    if var.dims[:1] != ("time",):
        raise DataError(f"{where}: dims {var.dims} must start with 'time'")
    horizontal = Grid.from_dataset(ds)
    h_dims = tuple(horizontal.dims)
    level_dims = [d for d in var.dims[1:] if d not in h_dims]
    if len(level_dims) > 1 or set(var.dims[1:]) != set(level_dims) | set(h_dims):
        raise DataError(f"{where}: dims {var.dims} must be (time, [level,] {', '.join(h_dims)})")
    if not level_dims:
        return horizontal, (), "1", ("time", *h_dims)
    name = level_dims[0]
    coord = ds[name] if name in ds.variables else None
    levels = np.asarray(coord.values if coord is not None else np.arange(var.sizes[name]), dtype=float)
    units = coord.attrs.get("units", "1") if coord is not None else "1"
    return horizontal, tuple(levels), units, ("time", name, *h_dims)


def _active_cells(ds: xr.Dataset, mask_variable: str | None, first: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    """Active cells: non-zero in ``mask_variable``, else finite at every level of the first record."""
    if mask_variable is None:
        return np.isfinite(first).reshape((-1, *shape)).all(axis=0)
    if mask_variable not in ds.variables:
        raise ConfigError(f"mask_variable: {mask_variable!r} is not in the file ({where})")
    mask = np.asarray(ds[mask_variable].values) != 0
    if mask.shape != shape:
        raise DataError(f"{where}: mask {mask_variable!r} has shape {mask.shape}, the grid {shape}")
    return mask


# ---------------------------------------------------------------------------------------- insolation
@dataclass(frozen=True)
class GridConfig(Validated):
    """A generated global grid (the keys of the coupling YAML's ``grids`` entries)."""

    type: Literal["regular_latlon", "gaussian"]
    """Grid type: regular_latlon or gaussian."""
    nlat: int
    """Number of latitudes."""
    nlon: int | None = None
    """Number of longitudes; required for regular_latlon, default 2 nlat for gaussian."""
    lat_order: Literal["descending", "ascending"] = "descending"
    """Row order: descending (north first) or ascending."""

    def validate(self) -> None:
        check_grid_side(self.nlat, "nlat")
        check_grid_side(self.nlon, "nlon")
        if self.type == "regular_latlon" and self.nlon is None:
            raise ConfigError("nlon: required for a regular_latlon grid")

    def build(self) -> Grid:
        if self.type == "gaussian":
            return GaussianGrid(self.nlat, self.nlon, lat_order=self.lat_order)
        return LatLonGrid(self.nlat, self.nlon, lat_order=self.lat_order)


@dataclass(frozen=True, kw_only=True)
class InsolationConfig(ComponentConfig):
    """``grid``: where to compute; ``epoch``/``year_length_days``: the seasonal clock of
    :class:`atmorep_coupler.data.forcings.ClimateScenario` (keep them equal to the training data's)."""

    grid: GridConfig
    """The grid to compute on."""
    field: str = "insolation"
    """Exported name."""
    epoch: _dt.datetime = _dt.datetime(2000, 1, 1)
    """Time zero of the seasonal clock (keep it equal to the training data's)."""
    year_length_days: float = 365.2425
    """Length of the seasonal cycle in days."""
    solar_constant: float = forcings.SOLAR_CONSTANT
    """Solar constant (W m-2)."""


class Insolation(Component):
    """Daily-mean top-of-atmosphere insolation (W m-2) on a lat-lon or Gaussian grid.

    The formula is :func:`atmorep_coupler.data.forcings.toa_insolation` at the seasonal phase
    :func:`~atmorep_coupler.data.forcings.seasonal_phase` of the current date, the same definition
    the default training data uses (no diurnal cycle: the dynamics have none).
    """

    config_class = InsolationConfig
    partial_steps = True

    def _initialize(self, config: InsolationConfig) -> None:
        self._component_grid = ComponentGrid(config.grid.build())
        self._scenario = forcings.ClimateScenario(epoch=config.epoch, year_length_days=config.year_length_days)
        self._epoch = to_cftime(config.epoch, config.calendar, what="epoch")
        self._lat = self._component_grid.horizontal.center_lat[:, :1]  # zonal: one value per row
        self._item_list = [
            ExchangeItem(
                config.field,
                "toa_incoming_shortwave_flux",
                "W m-2",
                0,
                "forcing",
                intent="out",
                long_name="daily-mean top-of-atmosphere insolation",
            ),
        ]
        self._values = np.empty(self._component_grid.shape, dtype=np.float64)
        self._expose({0: self._component_grid}, self._item_list, lambda: {config.field: self._values})
        self._values[...] = self._insolation_at(0.0)

    def _insolation_at(self, time: float) -> np.ndarray:
        days = (self.datetime_at(time) - self._epoch).total_seconds() / 86400.0
        phase = forcings.seasonal_phase(days, self._scenario)
        return forcings.toa_insolation(
            self._lat,
            phase,
            year_length_days=self._scenario.year_length_days,
            solar_constant=self.config.solar_constant,
        )

    def _advance(self, dt: float) -> None:
        self._values[...] = self._insolation_at(self.get_current_time() + dt)


# ---------------------------------------------------------------------------------------- CO2
_QUANTITY_DEFAULTS = {  # field name, standard name, units
    "co2": ("co2", "mole_fraction_of_carbon_dioxide_in_air", "ppm"),
    "warming": ("warming", "surface_temperature_anomaly", "K"),
}


@dataclass(frozen=True)
class RampConfig:
    """The training data's own scenario, :class:`atmorep_coupler.data.forcings.ClimateScenario`: a
    linear warming ramp from ``epoch`` and its CO2 equivalent. Unset keys keep that class's defaults,
    so a counterfactual is one key, e.g. ``warming_offset_K: 4.0``."""

    epoch: _dt.datetime | None = None
    """Start of the ramp and of the seasonal clock; null: ClimateScenario's default (2000-01-01)."""
    year_length_days: float | None = None
    """Length of the seasonal cycle in days; null: ClimateScenario's default."""
    warming_rate_K_per_year: float | None = None
    """Warming rate of the surface equilibrium temperature; null: ClimateScenario's default (1 K per year)."""
    warming_offset_K: float | None = None
    """Constant extra warming (e.g. 4.0 for a +4 K counterfactual); null: 0."""
    climate_sensitivity_K: float | None = None
    """Warming per CO2 doubling that converts warming to CO2 equivalent; null: ClimateScenario's default (3 K)."""
    co2_reference_ppm: float | None = None
    """CO2 concentration of zero warming; null: ClimateScenario's default (280 ppm)."""

    def scenario(self) -> forcings.ClimateScenario:
        given = {k: v for k, v in vars(self).items() if v is not None}
        return forcings.ClimateScenario(**given)


@dataclass(frozen=True, kw_only=True)
class CO2ScenarioConfig(ComponentConfig):
    """A global scalar: ``quantity`` ``co2`` (CO2 or CO2-equivalent concentration) or ``warming``.

    Exactly one source: ``series`` (YAML ``[[date, value], ...]``), ``path`` (CSV with a header
    ``time,<variable>``, or netCDF/zarr with a ``time`` series ``variable``) or ``ramp`` (computed with
    :mod:`atmorep_coupler.data.forcings`). ``field``, ``standard_name`` and ``units`` default by
    quantity (``co2``/ppm, ``warming``/K); ``units`` are also the units of a series or CSV file, and
    netCDF/zarr values are converted from their CF units to them.
    """

    quantity: Literal["co2", "warming"] = "co2"
    """co2 (CO2 or CO2-equivalent concentration) or warming."""
    series: list[tuple[_dt.datetime | str, float]] | None = None
    """Source: a YAML list of [date, value] pairs, linear in time between them."""
    path: Path | None = None
    """Source: CSV with a header ``time,<variable>``, or netCDF/zarr with a ``time`` series ``variable``."""
    ramp: RampConfig | None = None
    """Source: the training data's warming ramp (data/forcings.py)."""
    variable: str = "co2"
    """Variable name in ``path``."""
    field: str = ""
    """Exported name; default by quantity (co2 or warming)."""
    standard_name: str = ""
    """CF standard name of the export; default by quantity."""
    units: str = ""
    """Exported units and units of a series or CSV file; default by quantity (ppm or K); not with ``ramp``."""

    def validate(self) -> None:
        super().validate()
        if sum(source is not None for source in (self.series, self.path, self.ramp)) != 1:
            raise ConfigError(
                "give exactly one of 'series' (a list of [date, value]), 'path' (CSV/netCDF/zarr) and 'ramp'"
            )
        if self.ramp is not None and self.units:
            raise ConfigError(f"units: a ramp has fixed units ({_QUANTITY_DEFAULTS[self.quantity][2]}); remove the key")


class CO2Scenario(Component):
    """A global scalar forcing on the rank-0 scalar grid: a ramp formula, or linear in time between
    the given values."""

    config_class = CO2ScenarioConfig
    partial_steps = True

    def _initialize(self, config: CO2ScenarioConfig) -> None:
        field, standard_name, units = _QUANTITY_DEFAULTS[config.quantity]
        self._field = config.field or field
        units = config.units or units
        if config.ramp is not None:
            self._evaluate = self._ramp(config.ramp, config.quantity)
        else:
            self._evaluate = self._interpolated(config, units)
        self._value = np.zeros((), dtype=np.float64)
        self._item_list = [
            ExchangeItem(self._field, config.standard_name or standard_name, units, 0, "forcing", intent="out")
        ]
        self._expose({0: SCALAR_GRID}, self._item_list, lambda: {self._field: self._value})
        self._value[...] = self._evaluate(0.0)

    def _ramp(self, ramp: RampConfig, quantity: str) -> Callable[[float], float]:
        scenario = ramp.scenario()
        epoch = to_cftime(scenario.epoch, self.config.calendar, what="ramp.epoch")
        formula = forcings.co2_equivalent if quantity == "co2" else forcings.warming

        def evaluate(time: float) -> float:
            days = (self.datetime_at(time) - epoch).total_seconds() / 86400.0
            return formula(days, scenario)

        return evaluate

    def _interpolated(self, config: CO2ScenarioConfig, units: str) -> _RecordInterpolator:
        if config.series is not None:
            where = f"component {self.name!r}: series"
            dates, values, source_units = [d for d, _ in config.series], [v for _, v in config.series], units
        else:
            path = self.resolve_path(config.path)
            where = str(path)
            dates, values, source_units = _read_series(path, config.variable, units, where)
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise DataError(f"{where}: values must be finite, got {values.tolist()}")
        try:
            check_data_units(source_units, what=where, expected=units)
        except UnitError as exc:
            raise DataError(str(exc)) from None
        implausible = find_implausible(values, "co2_equivalent" if config.quantity == "co2" else "", source_units)
        if implausible is not None:
            raise DataError(f"{where}: value {implausible[1]:g} {source_units} (record {implausible[0]}) is outside the "
                            f"plausible {implausible[2][0]:g} .. {implausible[2][1]:g} {source_units}; check its units")
        values = convert(values, source_units, units, what=where)
        return _RecordInterpolator(
            _record_seconds(dates, self.start, what=where),
            lambda i: values[i],
            lambda t: self.datetime_at(t).isoformat(),
            f"component {self.name!r} ({where})",
        )

    def _advance(self, dt: float) -> None:
        self._value[...] = self._evaluate(self.get_current_time() + dt)


def _read_series(path: Path, variable: str, csv_units: str, where: str) -> tuple[list, np.ndarray, str]:
    """Dates, values and units of a scalar series from a CSV file (in ``csv_units``) or a netCDF/zarr
    time series (in its CF units)."""
    if path.suffix == ".csv":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with open(path, newline="") as fh:
            rows = list(csv.reader(row for row in fh if row.strip() and not row.lstrip().startswith("#")))
        header, body = rows[0], rows[1:]
        if "time" not in header or variable not in header:
            raise DataError(f"{path}: header {header} needs a 'time' column and a {variable!r} column")
        t, v = header.index("time"), header.index(variable)
        try:
            return [r[t].strip() for r in body], np.array([float(r[v]) for r in body]), csv_units
        except (ValueError, IndexError) as exc:
            raise DataError(f"{path}: unreadable row ({exc})") from None
    ds = _open_dataset(path)
    with ds:
        if variable not in ds.data_vars or ds[variable].dims != ("time",):
            raise DataError(f"{where}: needs a variable {variable!r} with dims ('time',)")
        var = ds[variable]
        return list(var["time"].values), np.asarray(var.values), var.attrs.get("units")
