"""The coupling YAML: a strict schema (dataclasses loaded by :func:`atmorep_coupler.config.load_yaml`).

Layout (docs/coupling.md explains every key)::

    version: 1
    run: {name, start, end, calendar, seed, device, transport, concurrent, restart: {dir, every, resume}}
    grids:      {<id>: {type: regular_latlon | gaussian | curvilinear, nlat, nlon, lat_order, poles, first_lon,
                        mask, file}}
    components: {<id>: {kind, config, grid, timestep, ensemble, device}}
    couplings:  [{from, to, fields: [{src, dst, units}], period, lag, time_reduction, remap, conservation}]
    outputs:    [{component, variables, interval, reduction, path}]

Unknown keys, missing keys and wrong types are rejected by the loader with the file and key path.
:meth:`CoupledRunConfig.validate` adds the checks that need the whole file (references exist,
periods are multiples of time steps, lags are whole periods, one producer per imported field,
vector pairs complete, no zero-lag coupling cycle). :func:`check_exchange_items` runs the checks that
need the built components and grids (fields exist, units convert, weight files fit the grids);
the driver calls it before the first step.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from atmorep_coupler.component.clock import Calendar, to_cftime
from atmorep_coupler.config import Validated, check_grid_side, check_name, check_relative_path, load_yaml, show
from atmorep_coupler.coupling.clock import lcm_seconds, whole_seconds
from atmorep_coupler.errors import ConfigError, UnitError
from atmorep_coupler.timeutil import format_duration
from atmorep_coupler.units import conversion, parse_units

__all__ = [
    "CoupledRunConfig", "RunSpec", "RestartSpec", "GridSpec", "MaskSpec", "ComponentSpec", "EnsembleSpec",
    "CouplingSpec", "FieldSpec", "RemapSpec", "FixedFill", "ConservationSpec", "OutputSpec",
    "COMPONENT_KINDS", "COMPONENT_KIND_GROUP", "REMAP_METHODS", "check_trusted_kind", "check_trusted_kinds", "load_coupling_config", "check_exchange_items",
]

TimeReduction = Literal["instant", "average", "accumulate", "min", "max"]
OutputReduction = Literal["mean", "instant", "min", "max"]
ComputedMethod = Literal["conservative", "conservative_normed", "bilinear", "nearest_s2d", "nearest_d2s"]
RemapMethod = Literal["conservative", "conservative_normed", "bilinear", "nearest_s2d", "nearest_d2s", "patch"]
"""``patch`` weights come only from an ESMF weight file; the others are also computed natively."""
REMAP_METHODS: tuple[str, ...] = RemapMethod.__args__  # type: ignore[attr-defined]
COMPUTED_METHODS: tuple[str, ...] = ComputedMethod.__args__  # type: ignore[attr-defined]
CONSERVATIVE_METHODS = ("conservative", "conservative_normed")

COMPONENT_KIND_GROUP = "atmorep_coupler.components"
"""Entry-point group of the registered component kinds: the built-in ones are declared in the project's
``pyproject.toml``; an installed package adds its own the same way (installing it is the act of trust)."""


def _registered_kinds() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=COMPONENT_KIND_GROUP)}


COMPONENT_KINDS: dict[str, str] = _registered_kinds()
"""Registered names for ``components.<id>.kind`` (entry points of :data:`COMPONENT_KIND_GROUP`) and the
``module:Class`` they stand for; any other class is named as ``"pkg.module:Class"`` and needs
``--allow-import`` unless its package registered a kind."""

MAX_MEMBERS = 1024
"""Most ensemble members a component may run (each is a full state in memory)."""
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


# --------------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RestartSpec(Validated):
    """Restart files every ``every`` of simulated time under ``dir/<run.name>/``.

    ``resume``: ``auto`` continues from the latest restart when one exists, ``never`` always starts
    afresh, ``require`` fails when there is none (the CLI flag ``--resume`` means ``require``).
    """

    every: _dt.timedelta
    """Simulated time between restarts (a multiple of the synchronisation interval); one is also written at the
    end."""
    dir: Path = Path("restarts")
    """Folder of the restarts, inside the run's output folder (an absolute path only with ``--allow-outside-out``)."""
    resume: Literal["auto", "never", "require"] = "auto"
    """auto: continue from the latest restart if there is one; never: start afresh; require: fail without one."""

    def validate(self) -> None:
        check_relative_path(self.dir, "dir")


@dataclass(frozen=True)
class RunSpec(Validated):
    name: str
    """Run name (letters, digits, '_', '-', '.'; starting with a letter or digit; at most 100 characters); names
    the restart folder and the default output folder."""
    start: _dt.datetime | str
    """Start date in ``calendar`` (quote dates Python rejects, e.g. '2000-02-30' in 360_day)."""
    end: _dt.datetime | str
    """End date in ``calendar``; the run length must be a whole number of synchronisation intervals."""
    calendar: Calendar = "proleptic_gregorian"
    """cftime calendar of every date and of the outputs."""
    seed: int = 0
    """Passed to components whose config has a ``seed`` key."""
    device: str = "cpu"
    """Default torch device for components whose config has a ``device`` key."""
    transport: Literal["inprocess", "ray"] = "inprocess"
    """inprocess: every component in this process; ray: each component in its own Ray actor."""
    concurrent: bool = True
    """With ``transport: ray``, the steps of components that share no data in a stage of the run sequence
    (``--print-sequence``) run at the same time; false: one step after another in the sequence's order. The
    results are the same bit for bit either way (and in-process, where steps always run one at a time)."""
    restart: RestartSpec | None = None
    """Restart files; null: none."""

    def validate(self) -> None:
        check_name(self.name, "name")
        start = to_cftime(self.start, self.calendar, what="start")
        end = to_cftime(self.end, self.calendar, what="end")
        if end <= start:
            raise ConfigError(f"end: {end.isoformat()} is not after start {start.isoformat()}")


# ------------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class MaskSpec:
    """A static mask read from a netCDF/zarr file: ``variable`` of the grid's shape, non-zero = active."""

    file: Path
    """netCDF or zarr file (relative to the YAML's folder)."""
    variable: str
    """Variable of the grid's shape; non-zero cells are active."""


@dataclass(frozen=True)
class GridSpec(Validated):
    """``regular_latlon`` (nlat, nlon), ``gaussian`` (nlat, optional nlon) or ``curvilinear`` (a SCRIP grid file).

    The ERA5 layouts are regular lat-lon grids with a column centred on 0°: ARCO-ERA5 (0.25°) is
    ``{type: regular_latlon, nlat: 721, nlon: 1440, poles: true, first_lon: 0}``, WeatherBench 2's
    ``240x121_equiangular_with_poles`` is ``{..., nlat: 121, nlon: 240, poles: true, first_lon: 0}`` and its
    ``64x32_equiangular`` ``{..., nlat: 32, nlon: 64, first_lon: 0}``. ``lat_order`` is the order of the
    component's rows, which for the AtmoRep component is always ``descending`` (north first), whatever the
    store's order.
    """

    type: Literal["regular_latlon", "gaussian", "curvilinear"]
    """regular_latlon (nlat, nlon), gaussian (nlat, optional nlon) or curvilinear (a SCRIP grid file)."""
    nlat: int | None = None
    """Number of latitudes (regular_latlon, gaussian; even for gaussian)."""
    nlon: int | None = None
    """Number of longitudes (regular_latlon; gaussian default 2 nlat)."""
    lat_order: Literal["descending", "ascending"] | None = None
    """Row order: descending (north first, ERA5) or ascending."""
    poles: bool = False
    """regular_latlon: the first and last rows lie on the poles (spacing 180°/(nlat - 1), half cells at the poles:
    ERA5, WeatherBench 2's ``equiangular_with_poles``); false: rows are cell centres, spacing 180°/nlat."""
    first_lon: float | None = None
    """regular_latlon: longitude of the first column's centre (ERA5 and WeatherBench 2: 0); null: half a cell east
    of 0° (cells start at 0°)."""
    mask: MaskSpec | None = None
    """Static mask of the grid; null: every cell active."""
    file: Path | None = None
    """SCRIP grid file of a curvilinear grid (relative to the YAML's folder)."""

    def validate(self) -> None:
        if self.type == "curvilinear":
            if self.file is None:
                raise ConfigError("file: a curvilinear grid needs a SCRIP grid file")
            for key in ("nlat", "nlon", "lat_order", "first_lon"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{key}: not allowed for a curvilinear grid (its file defines it)")
            if self.poles:
                raise ConfigError("poles: not allowed for a curvilinear grid (its file defines it)")
            return
        if self.type != "regular_latlon" and (self.poles or self.first_lon is not None):
            raise ConfigError(f"poles, first_lon: only for regular_latlon grids, not {self.type!r}")
        if self.file is not None:
            raise ConfigError(f"file: not allowed for type {self.type!r}; use type: curvilinear for a grid file")
        required = ("nlat", "nlon") if self.type == "regular_latlon" else ("nlat",)
        for key in required:
            if getattr(self, key) is None:
                raise ConfigError(f"{key}: required for type {self.type!r}")
        for key in ("nlat", "nlon"):
            check_grid_side(getattr(self, key), key)
        if self.poles and self.nlat < 2:
            raise ConfigError(f"nlat: a grid with rows on both poles needs at least 2 latitudes, got {self.nlat}")
        if self.type == "gaussian" and self.nlat % 2:
            raise ConfigError(f"nlat: a Gaussian grid has an even number of latitudes, got {self.nlat}")


# -------------------------------------------------------------------------------------- components
@dataclass(frozen=True)
class EnsembleSpec(Validated):
    members: int
    """Number of ensemble members (at least 1)."""

    def validate(self) -> None:
        if not 1 <= self.members <= MAX_MEMBERS:
            raise ConfigError(f"members: must be between 1 and {MAX_MEMBERS}, got {self.members}")


@dataclass(frozen=True)
class ComponentSpec(Validated):
    """``kind``: a name of :data:`COMPONENT_KINDS` or ``"pkg.module:Class"`` (imported only when trusted:
    ``--allow-import``, see :func:`check_trusted_kind`); ``grid``: the id of its
    horizontal grid (none for a component of global scalars only); ``config``: the component's own
    config (a YAML path or an inline mapping) without the clock keys, which the driver fills from
    ``run`` and ``timestep``."""

    kind: str
    """A registered kind (below) or the import path ``package.module:Class`` of a Component subclass (a module
    outside the registered kinds' packages only with ``--allow-import``)."""
    timestep: _dt.timedelta
    """The component's time step; every coupling period and output interval of it must be a multiple."""
    grid: str | None = None
    """Id of its horizontal grid in ``grids``; null for a component of global scalars only."""
    config: Path | dict[str, Any] | None = None
    """The component's own config, inline or a YAML file path; the keys depend on ``kind`` (below), without the
    clock keys."""
    ensemble: EnsembleSpec | None = None
    """Passed on as the component config's ``ensemble``; the config class must have that key."""
    device: str | None = None
    """Passed on as the component config's ``device`` (and a GPU for its Ray actor); default ``run.device``."""

    def validate(self) -> None:
        if self.kind not in COMPONENT_KINDS and not _IMPORT_PATH.match(self.kind):
            raise ConfigError(
                f"kind: {self.kind!r} is neither a registered kind ({', '.join(sorted(COMPONENT_KINDS))}) "
                "nor an import path 'package.module:Class'"
            )
        whole_seconds(self.timestep, what="timestep")


# --------------------------------------------------------------------------------------- couplings
@dataclass(frozen=True)
class FieldSpec(Validated):
    """One exchanged field; ``src``/``dst`` as ``[u, v]`` pairs mark a vector. ``units``: the units the
    destination receives (default: its import units)."""

    src: str | list[str]
    """Export of the source component; a [u, v] pair marks a vector."""
    dst: str | list[str]
    """Import of the destination component; a [u, v] pair for a vector."""
    units: str | None = None
    """Units the destination receives (converted from the source's and on to the import's); default: the
    import's units."""

    def validate(self) -> None:
        if isinstance(self.src, list) or isinstance(self.dst, list):
            for key in ("src", "dst"):
                value = getattr(self, key)
                if not isinstance(value, list) or len(value) != 2:
                    raise ConfigError(f"{key}: a vector needs [u, v] pairs in both src and dst, got {value!r}")
                if value[0] == value[1]:
                    raise ConfigError(f"{key}: the two components of a vector must differ, got {value!r}")
        if self.units is not None:
            try:
                parse_units(self.units, what="units")
            except UnitError as exc:
                raise ConfigError(str(exc)) from None

    @property
    def is_vector(self) -> bool:
        return isinstance(self.src, list)

    @property
    def src_names(self) -> tuple[str, ...]:
        return tuple(self.src) if isinstance(self.src, list) else (self.src,)

    @property
    def dst_names(self) -> tuple[str, ...]:
        return tuple(self.dst) if isinstance(self.dst, list) else (self.dst,)


@dataclass(frozen=True)
class FixedFill:
    """Fallback that fills still-unmapped destination cells with a constant (YAC ``fixed``)."""

    fixed: float
    """Constant for destination cells still unmapped."""


@dataclass(frozen=True)
class RemapSpec(Validated):
    """``method`` and an optional ESMF/SCRIP ``weights`` file (read instead of computing weights);
    ``src_mask``: honour the source grid's static mask; ``fraction``: a source field used as a
    dynamic fraction (fraction-weighted normalized mapping); ``fallback``: methods or ``{fixed: v}``
    that fill what the previous ones left unmapped; ``vector``: how [u, v] pairs are mapped."""

    method: RemapMethod
    """Regridding method; patch only from an ESMF weight file."""
    weights: Path | None = None
    """ESMF/SCRIP weight file read instead of computing weights (relative to the YAML's folder); it must fit the
    grids."""
    src_mask: bool = True
    """Honour the source grid's static mask and the mask its component publishes."""
    fraction: str | None = None
    """A source export used as a dynamic fraction f: the map is W(f x) / W(f)."""
    fallback: list[str | FixedFill] = field(default_factory=list)
    """Methods (or a final ``{fixed: value}``) that fill what the previous ones left unmapped."""
    vector: Literal["cart3d"] = "cart3d"
    """How [u, v] pairs are mapped: cart3d rotates to 3-D Cartesian components and back."""

    def validate(self) -> None:
        for k, step in enumerate(self.fallback):
            if isinstance(step, str) and step not in COMPUTED_METHODS:
                raise ConfigError(f"fallback[{k}]: {step!r} is not one of {list(COMPUTED_METHODS)} or {{fixed: value}}")
            if isinstance(step, FixedFill) and k != len(self.fallback) - 1:
                raise ConfigError(f"fallback[{k}]: a fixed fill fills everything; it must come last")


@dataclass(frozen=True)
class ConservationSpec(Validated):
    """Diagnose source vs destination area integral per exchange; with ``check`` fail beyond ``rtol``."""

    check: bool = False
    """Stop the run when the relative difference of the area integrals exceeds ``rtol``."""
    rtol: float = 1e-9
    """Tolerance of the relative difference."""

    def validate(self) -> None:
        if not self.rtol > 0:
            raise ConfigError(f"rtol: must be positive, got {self.rtol}")


@dataclass(frozen=True)
class CouplingSpec:
    from_: str = field(metadata={"key": "from"})
    """Source component id."""
    to: str
    """Destination component id."""
    fields: list[FieldSpec]
    """The exchanged fields."""
    period: _dt.timedelta
    """Coupling period: a multiple of both components' time steps."""
    lag: _dt.timedelta = _dt.timedelta(0)
    """A whole number of periods: 0 (the source runs the window first) or k periods (the window ending k - 1
    periods before)."""
    time_reduction: TimeReduction = "instant"
    """How the source's samples over a period become one value (instant: the last one)."""
    remap: RemapSpec | None = None
    """Regridding; required when the two components are on different grids."""
    conservation: ConservationSpec | None = None
    """Compare source and destination area integrals at every put (conservative methods only); records go to
    conservation.csv."""


# ----------------------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class OutputSpec(Validated):
    """Write ``variables`` of ``component`` to the zarr store ``path`` once per ``interval``."""

    component: str
    """Component id."""
    variables: list[str]
    """Its exchange items to write."""
    interval: _dt.timedelta
    """One record per interval (a multiple of the component's time step)."""
    path: Path
    """Zarr store, inside the run's output folder (an absolute path only with ``--allow-outside-out``)."""
    reduction: OutputReduction = "mean"
    """Of the samples after every step in each interval: mean, instant (the last), min or max."""

    def validate(self) -> None:
        check_relative_path(self.path, "path")


# --------------------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class CoupledRunConfig(Validated):
    version: Literal[1]
    """Version of the file format."""
    run: RunSpec
    """Name, dates, calendar, transport and restarts of the run."""
    grids: dict[str, GridSpec]
    """Grid id -> grid."""
    components: dict[str, ComponentSpec]
    """Component id -> component."""
    couplings: list[CouplingSpec] = field(default_factory=list)
    """The exchanges between components."""
    outputs: list[OutputSpec] = field(default_factory=list)
    """Zarr output streams."""

    def validate(self) -> None:
        """Checks across sections; messages carry full key paths (``couplings[1].period``)."""
        if not self.components:
            raise ConfigError("components: at least one component is needed")
        for name, comp in self.components.items():
            check_name(name, "components: a component id")
            if comp.grid is not None and comp.grid not in self.grids:
                raise ConfigError(f"components.{name}.grid: unknown grid {comp.grid!r} (defined: {_names(self.grids)})")
        producers: dict[tuple[str, str], str] = {}
        for i, coupling in enumerate(self.couplings):
            self._validate_coupling(f"couplings[{i}]", coupling, producers)
        self._validate_no_zero_lag_cycle()
        for i, output in enumerate(self.outputs):
            self._validate_output(f"outputs[{i}]", output)
        self._validate_output_paths()
        self._validate_schedule()

    # -- helpers of validate -----------------------------------------------------------------
    def _timestep(self, component: str) -> int:
        return whole_seconds(self.components[component].timestep, what=f"components.{component}.timestep")

    def _validate_coupling(self, path: str, c: CouplingSpec, producers: dict[tuple[str, str], str]) -> None:
        for key, comp in (("from", c.from_), ("to", c.to)):
            if comp not in self.components:
                raise ConfigError(f"{path}.{key}: unknown component {comp!r} (defined: {_names(self.components)})")
        if c.from_ == c.to:
            raise ConfigError(f"{path}.to: a component cannot be coupled to itself ({c.to!r})")
        if not c.fields:
            raise ConfigError(f"{path}.fields: at least one field is needed")
        period = whole_seconds(c.period, what=f"{path}.period")
        for comp in (c.from_, c.to):
            step = self._timestep(comp)
            if period % step:
                raise ConfigError(
                    f"{path}.period: {format_duration(c.period)} is not a multiple of component {comp!r} "
                    f"timestep {format_duration(self.components[comp].timestep)}"
                )
        lag = whole_seconds(c.lag, what=f"{path}.lag", allow_zero=True)
        if lag % period:
            raise ConfigError(
                f"{path}.lag: {format_duration(c.lag)} is not a whole number of periods ({format_duration(c.period)}); "
                "use 0 (same window, source first) or a multiple of the period"
            )
        grids = (self.components[c.from_].grid, self.components[c.to].grid)
        if c.remap is None and None not in grids and grids[0] != grids[1]:
            raise ConfigError(
                f"{path}.remap: required, because {c.from_!r} (grid {self.components[c.from_].grid!r}) and "
                f"{c.to!r} (grid {self.components[c.to].grid!r}) are on different grids"
            )
        if c.remap is not None:
            self._validate_remap(f"{path}.remap", c)
        if c.conservation is not None and c.conservation.check:
            method = c.remap.method if c.remap is not None else None
            if method is not None and method not in CONSERVATIVE_METHODS:
                raise ConfigError(
                    f"{path}.conservation.check: remap method {method!r} does not conserve area integrals; "
                    f"use one of {list(CONSERVATIVE_METHODS)} or set check: false"
                )
        for j, f in enumerate(c.fields):
            for dst in f.dst_names:
                key = (c.to, dst)
                if key in producers:
                    raise ConfigError(
                        f"{path}.fields[{j}].dst: field {dst!r} of component {c.to!r} is already imported by "
                        f"{producers[key]}; every imported field needs exactly one producer"
                    )
                producers[key] = path
            if f.is_vector and c.time_reduction in ("min", "max"):
                raise ConfigError(
                    f"{path}.time_reduction: {c.time_reduction!r} of vector components {f.src!r} is not a vector "
                    "operation; use instant or average"
                )

    def _validate_remap(self, path: str, c: CouplingSpec) -> None:
        remap = c.remap
        if remap.fraction is not None:
            if c.time_reduction not in ("instant", "average"):
                raise ConfigError(
                    f"{path}.fraction: fraction-weighted mapping needs time_reduction instant or average, "
                    f"got {c.time_reduction!r}"
                )
            if any(remap.fraction in f.src_names for f in c.fields):
                raise ConfigError(
                    f"{path}.fraction: {remap.fraction!r} is one of the mapped fields; name a separate fraction field"
                )
        if remap.method == "patch" and remap.weights is None:
            raise ConfigError(f"{path}.method: 'patch' weights are not computed here; give them in a weights file (ESMF)")

    def _validate_no_zero_lag_cycle(self) -> None:
        """With lag 0 the source runs a window before the destination may start it: those edges must not form a cycle."""
        edges: dict[str, set[str]] = {name: set() for name in self.components}
        for c in self.couplings:
            if c.lag == _dt.timedelta(0):
                edges[c.from_].add(c.to)
        done: set[str] = set()

        def visit(node: str, stack: list[str]) -> None:
            for succ in sorted(edges[node]):
                if succ in stack:
                    cycle = " -> ".join(stack[stack.index(succ):] + [succ])
                    raise ConfigError(
                        f"couplings: the zero-lag couplings {cycle} form a cycle, so no component could start "
                        "its window; give one of them a lag of one period"
                    )
                if succ not in done:
                    visit(succ, stack + [succ])
            done.add(node)

        for node in sorted(edges):
            if node not in done:
                visit(node, [node])

    def _validate_output(self, path: str, o: OutputSpec) -> None:
        if o.component not in self.components:
            raise ConfigError(f"{path}.component: unknown component {o.component!r} (defined: {_names(self.components)})")
        if not o.variables:
            raise ConfigError(f"{path}.variables: at least one variable is needed")
        for k, var in enumerate(o.variables):
            if var in o.variables[:k]:
                raise ConfigError(f"{path}.variables[{k}]: {var!r} is listed twice")
        interval = whole_seconds(o.interval, what=f"{path}.interval")
        if interval % self._timestep(o.component):
            raise ConfigError(
                f"{path}.interval: {format_duration(o.interval)} is not a multiple of component {o.component!r} "
                f"timestep {format_duration(self.components[o.component].timestep)}"
            )

    def _validate_output_paths(self) -> None:
        """Every output store, the restart folder and ``conservation.csv`` are separate places: none is
        another, nor inside another (a resumed run cuts back or replaces what it wrote there)."""
        claimed: list[tuple[str, Path]] = [("the conservation diagnostics", Path("conservation.csv"))]
        if self.run.restart is not None:
            claimed.append(("run.restart.dir", self.run.restart.dir))
        for i, o in enumerate(self.outputs):
            path = Path(os.path.normpath(o.path))
            for owner, other in claimed:
                other = Path(os.path.normpath(other))
                how = ("is already written by" if path == other else "lies inside" if other in path.parents
                       else "contains" if path in other.parents else None)
                if how:
                    raise ConfigError(f"outputs[{i}].path: {show(str(o.path))} {how} {owner} ({str(other)!r}); "
                                      "give every output a place of its own")
            claimed.append((f"outputs[{i}]", o.path))

    def _validate_schedule(self) -> None:
        """The run must be a whole number of synchronisation intervals (and of output intervals)."""
        sync = self.sync_seconds
        start = to_cftime(self.run.start, self.run.calendar, what="run.start")
        end = to_cftime(self.run.end, self.run.calendar, what="run.end")
        length = whole_seconds(end - start, what="run.end")
        if length % sync:
            raise ConfigError(
                f"run.end: the run length {format_duration(end - start)} is not a whole number of synchronisation "
                f"intervals ({format_duration(_dt.timedelta(seconds=sync))}, the least common multiple of all "
                "coupling periods and component timesteps)"
            )
        for i, o in enumerate(self.outputs):
            if length % whole_seconds(o.interval, what=f"outputs[{i}].interval"):
                raise ConfigError(
                    f"outputs[{i}].interval: the run length {format_duration(end - start)} is not a whole number "
                    f"of output intervals ({format_duration(o.interval)})"
                )
        restart = self.run.restart
        if restart is not None and whole_seconds(restart.every, what="run.restart.every") % sync:
            raise ConfigError(
                f"run.restart.every: {format_duration(restart.every)} is not a multiple of the synchronisation "
                f"interval {format_duration(_dt.timedelta(seconds=sync))}"
            )

    # -- derived quantities ------------------------------------------------------------------
    @property
    def sync_seconds(self) -> int:
        """Least common multiple of all coupling periods and timesteps: every component is at the same
        time at multiples of it, every coupling window closed; the driver syncs and restarts there."""
        values = [self._timestep(name) for name in self.components]
        values += [whole_seconds(c.period, what="period") for c in self.couplings]
        return lcm_seconds(values)


def check_trusted_kind(where: str, kind: str, allow_imports: Sequence[str] = ()) -> str:
    """The ``module:Class`` path of ``kind`` once it is trusted to be imported, checked before anything is.

    A coupling YAML is code: ``kind: pkg.module:Class`` imports ``pkg.module``, which runs its top-level
    code. Trusted without asking are the registered kinds (entry points of :data:`COMPONENT_KIND_GROUP`)
    and modules of the packages that registered them (installed packages, trusted when installed);
    anything else only when ``allow_imports`` names the module or a package above it (``--allow-import``).
    """
    if kind in COMPONENT_KINDS:
        return COMPONENT_KINDS[kind]
    module = kind.partition(":")[0]
    trusted = {path.partition(":")[0].split(".")[0] for path in COMPONENT_KINDS.values()} | set(allow_imports)
    if not any(module == root or module.startswith(root + ".") for root in trusted):
        raise ConfigError(
            f"{where}: {show(kind)} would import module {show(module)} and run its code; a coupling YAML is code, "
            f"so only the registered kinds ({', '.join(sorted(COMPONENT_KINDS))}) and modules of their packages are "
            f"imported unasked. If you trust it, pass --allow-import {module.split('.')[0]} "
            "(CoupledRun(..., allow_imports=[...]) in Python), or register it as an entry point "
            f"of {COMPONENT_KIND_GROUP!r}")
    return kind


def check_trusted_kinds(config: CoupledRunConfig, allow_imports: Sequence[str] = ()) -> None:
    """:func:`check_trusted_kind` for every component, before any of them is imported."""
    for name, comp in config.components.items():
        check_trusted_kind(f"components.{name}.kind", comp.kind, allow_imports)


def _names(mapping: Mapping[str, Any]) -> str:
    return ", ".join(sorted(mapping)) or "none"


def load_coupling_config(source: str | Path | dict, *, origin: str = "<mapping>") -> tuple[CoupledRunConfig, Path]:
    """Load and validate a coupling YAML (or a mapping, named ``origin`` in errors); returns the config and
    the folder relative input paths (grid, mask, weight and component config files) are resolved against."""
    config = load_yaml(CoupledRunConfig, source, origin=origin)
    base = Path(source).resolve().parent if not isinstance(source, dict) else Path.cwd()
    return _resolve_inputs(config, base), base


def _resolve_inputs(config: CoupledRunConfig, base: Path) -> CoupledRunConfig:
    def absolute(path: Path | None) -> Path | None:
        return None if path is None or path.is_absolute() else base / path

    grids = {}
    for name, grid in config.grids.items():
        mask = grid.mask and dataclasses.replace(grid.mask, file=absolute(grid.mask.file) or grid.mask.file)
        grids[name] = dataclasses.replace(grid, mask=mask, file=absolute(grid.file) or grid.file)
    components = {
        name: dataclasses.replace(comp, config=absolute(comp.config) or comp.config)
        if isinstance(comp.config, Path) else comp
        for name, comp in config.components.items()
    }
    couplings = [
        dataclasses.replace(c, remap=dataclasses.replace(c.remap, weights=absolute(c.remap.weights) or c.remap.weights))
        if c.remap is not None and c.remap.weights is not None else c
        for c in config.couplings
    ]
    return dataclasses.replace(config, grids=grids, components=components, couplings=couplings)


# ------------------------------------------------------------------ checks against built components
def check_exchange_items(
    config: CoupledRunConfig,
    items: Mapping[str, Mapping[str, Any]],
    grids: Mapping[str, Any],
) -> None:
    """Pre-run checks that need the components (``items[component][name]`` → an object with
    ``units``, ``intent``, ``optional``, ``is_input``, ``is_output``, an :class:`ExchangeItem`) and the
    built grids (``grids[grid id]``).

    Every source field is an export of its component and every destination field an import; every
    import of every component (except optional ones) has exactly one producer; units convert; weight
    files fit the grids.
    """

    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    def check_export(path: str, component: str, name: str) -> None:
        item = items[component].get(name)
        if item is None or not item.is_output:
            exports = _names({k: v for k, v in items[component].items() if v.is_output})
            raise fail(path, f"{name!r} is not an export of component {component!r} (exports: {exports})")

    produced = set()
    for i, c in enumerate(config.couplings):
        if c.remap is not None and c.remap.fraction is not None:
            check_export(f"couplings[{i}].remap.fraction", c.from_, c.remap.fraction)
        for j, f in enumerate(c.fields):
            path = f"couplings[{i}].fields[{j}]"
            for src in f.src_names:
                check_export(f"{path}.src", c.from_, src)
            for src, dst in zip(f.src_names, f.dst_names, strict=True):
                item = items[c.to].get(dst)
                if item is None or not item.is_input:
                    raise fail(f"{path}.dst", f"{dst!r} is not an import of component {c.to!r} "
                               f"(imports: {_names({k: v for k, v in items[c.to].items() if v.is_input})})")
                produced.add((c.to, dst))
                src_units = items[c.from_][src].units
                delivered = f.units or item.units
                try:
                    conversion(src_units, delivered, what=f"{src} -> {dst}")
                    conversion(delivered, item.units, what=f"{src} -> {dst}")
                except UnitError as exc:
                    raise fail(f"{path}.units", f"{exc}; source units {src_units!r}, destination units {item.units!r}") from None
        if c.remap is not None and c.remap.weights is not None:
            _check_weight_file(fail, f"couplings[{i}].remap.weights", c.remap.weights,
                               grids[config.components[c.from_].grid], grids[config.components[c.to].grid])
    for name, component_items in items.items():
        for item_name, item in component_items.items():
            # An "inout" (prognostic) item is the component's own state: coupling into it is optional;
            # so is an import the component declares optional (it runs without it).
            if item.intent == "in" and not item.optional and (name, item_name) not in produced:
                raise fail("couplings", f"import {item_name!r} of component {name!r} has no producer; "
                           "add a coupling that delivers it")
    for i, o in enumerate(config.outputs):
        for k, var in enumerate(o.variables):
            if var not in items[o.component]:
                raise fail(f"outputs[{i}].variables[{k}]", f"{var!r} is not an exchange item of component "
                           f"{o.component!r} (items: {_names(items[o.component])})")


def _check_weight_file(fail, path: str, file: Path, src, dst) -> None:
    """An ESMF/SCRIP weight file must fit the grids: sizes, grid dims and cell centres (lat order)."""
    from atmorep_coupler.errors import RegridError
    from atmorep_coupler.regrid.weightfile import check_matches, read_weight_file

    try:
        check_matches(read_weight_file(file), src, dst)
    except RegridError as exc:
        raise fail(path, f"{exc}") from None
