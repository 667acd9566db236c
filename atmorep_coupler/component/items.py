"""What a component exchanges: its grids (as BMI sees them) and its exchange items.

A :class:`ComponentGrid` pairs a horizontal grid from :mod:`atmorep_coupler.regrid.grids` (or any
object with the same attributes, see :class:`HorizontalGrid`) with optional vertical levels and maps
it onto the BMI grid functions. An :class:`ExchangeItem` is one variable: name, standard name,
UDUNITS units (ECMWF spellings such as ``m**2 s**-2`` are respelled ``m2 s-2``), grid id, role, direction
and an optional valid range that guards imports; the standard name is a CF standard name or empty.

Array layout (BMI leaves it to the component, so it is fixed here): values are C-ordered ``(level, lat, lon)`` with
longitude fastest, the order of ESMF/SCRIP weight files. Cell-mean values sit on the cell centres,
and the centres are declared as the BMI *nodes* (location ``"node"``): ``get_grid_shape`` counts
centres, ``get_grid_x``/``get_grid_y`` return centre coordinates. Cell bounds and areas, which BMI
cannot express, are published through the grid object itself (``ComponentGrid.horizontal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from atmorep_coupler.errors import ComponentError, UnitError
from atmorep_coupler.units import udunits

__all__ = ["Role", "Intent", "HorizontalGrid", "ComponentGrid", "ExchangeItem", "SCALAR_GRID", "member_item"]


def member_item(field: str, member: int) -> str:
    """The BMI name of ensemble member ``member`` (0-based) of ``field``: ``<field>_member_<k>``."""
    return f"{field}_member_{member}"

Role = Literal["prognostic", "forcing", "static", "diagnostic", "conditioning"]
"""NUOPC-style roles: prognostic = carried in the state (in and out); forcing = external, time varying;
static = time invariant; diagnostic = output only; conditioning = attended to, never predicted."""

Intent = Literal["in", "out", "inout"]

_DEFAULT_INTENT: dict[str, Intent] = {
    "prognostic": "inout",
    "diagnostic": "out",
    "forcing": "in",
    "static": "in",
    "conditioning": "in",
}


@runtime_checkable
class HorizontalGrid(Protocol):
    """The part of the regrid grid interface a component needs (regrid/grids.py)."""

    @property
    def shape(self) -> tuple[int, int]: ...  # (ny, nx), C order, x/lon fastest

    @property
    def center_lat(self) -> np.ndarray: ...  # shape, degrees

    @property
    def center_lon(self) -> np.ndarray: ...  # shape, degrees

    @property
    def corner_lat(self) -> np.ndarray: ...  # shape + (4,), degrees

    @property
    def corner_lon(self) -> np.ndarray: ...

    @property
    def mask(self) -> np.ndarray: ...  # bool, True = active

    @property
    def area(self) -> np.ndarray: ...  # steradian


@dataclass(frozen=True, eq=False)
class ComponentGrid:
    """One BMI grid: a horizontal grid (``None`` for the rank-0 scalar grid) and optional levels.

    BMI grids have at most three axes (x, y, z), so there is no ensemble-member axis: a stochastic
    component exports each member as an item of its own on the grid of the field (the AtmoRep
    component's ``<field>_member_<k>``).
    """

    horizontal: HorizontalGrid | None = None
    levels: tuple[float, ...] = ()
    level_units: str = "hPa"

    def __post_init__(self) -> None:
        if self.horizontal is None and self.levels:
            raise ComponentError("a grid with levels needs a horizontal grid (column grids are not supported)")
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))

    @property
    def shape(self) -> tuple[int, ...]:
        """Node counts, slowest first: ``([nlevel,] ny, nx)`` or ``()`` for a scalar."""
        if self.horizontal is None:
            return ()
        horizontal = tuple(int(n) for n in self.horizontal.shape)
        return ((len(self.levels),) if self.levels else ()) + horizontal

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names of fields on this grid, matching :attr:`shape`."""
        if self.horizontal is None:
            return ()
        horizontal = ("latitude", "longitude") if self.is_rectilinear else ("y", "x")
        return (("level",) if self.levels else ()) + horizontal

    @cached_property
    def is_rectilinear(self) -> bool:
        """True when latitude varies only along rows and longitude only along columns."""
        if self.horizontal is None:
            return False
        lat, lon = np.asarray(self.horizontal.center_lat), np.asarray(self.horizontal.center_lon)
        return bool(np.all(lat == lat[:, :1]) and np.all(lon == lon[:1, :]))

    @property
    def bmi_type(self) -> str:
        """``"scalar"``, ``"rectilinear"`` (lat-lon, Gaussian) or ``"structured_quadrilateral"``."""
        if self.horizontal is None:
            return "scalar"
        return "rectilinear" if self.is_rectilinear else "structured_quadrilateral"

    def node_coordinates(self, axis: Literal["x", "y", "z"]) -> np.ndarray:
        """BMI ``get_grid_x/y/z``: 1-D axes on rectilinear grids, every node on structured ones.

        x is longitude and y latitude in degrees; z is the level coordinate in :attr:`level_units`.
        """
        if self.horizontal is None:
            raise NotImplementedError("the scalar grid (rank 0) has no node coordinates")
        if axis == "z" and not self.levels:
            raise NotImplementedError(f"grid of rank {self.rank} has no z coordinate (no levels)")
        levels = np.asarray(self.levels, dtype=float)
        if self.is_rectilinear:
            if axis == "x":
                return np.asarray(self.horizontal.center_lon, dtype=float)[0, :]
            if axis == "y":
                return np.asarray(self.horizontal.center_lat, dtype=float)[:, 0]
            return levels
        horizontal = {"x": self.horizontal.center_lon, "y": self.horizontal.center_lat}
        if axis == "z":
            values = levels[:, None, None]
        else:
            values = np.asarray(horizontal[axis], dtype=float)
        return np.broadcast_to(values, self.shape).reshape(-1)


SCALAR_GRID = ComponentGrid()
"""The rank-0 grid of global scalars such as the CO2 concentration (BMI rank 0, one value)."""


@dataclass(frozen=True)
class ExchangeItem:
    """One exchanged variable, NUOPC-style advertised by :meth:`Component.exchange_items`.

    ``intent`` defaults from ``role`` (prognostic: inout, diagnostic: out, others: in); a data
    component that *produces* a forcing says ``intent="out"``. ``valid_range`` (in ``units``) and
    ``allow_nan`` guard imported values. ``optional``: an import the component can run without
    (e.g. a nudging target), so a coupling YAML need not deliver it.
    """

    name: str
    standard_name: str
    units: str
    grid: int
    role: Role
    intent: Intent | None = None
    long_name: str = ""
    dtype: str = "float64"
    valid_range: tuple[float, float] | None = None
    allow_nan: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        if self.role not in _DEFAULT_INTENT:
            raise ComponentError(
                f"exchange item {self.name!r}: role {self.role!r} is not one of {list(_DEFAULT_INTENT)}"
            )
        if self.intent is None:
            object.__setattr__(self, "intent", _DEFAULT_INTENT[self.role])
        if self.intent not in ("in", "out", "inout"):
            raise ComponentError(f"exchange item {self.name!r}: intent {self.intent!r} is not 'in', 'out' or 'inout'")
        if self.optional and self.intent != "in":
            raise ComponentError(f"exchange item {self.name!r}: only imports (intent 'in') can be optional")
        try:  # one spelling everywhere: BMI's get_var_units, outputs, messages
            object.__setattr__(self, "units", udunits(self.units))
        except UnitError as exc:
            raise UnitError(f"exchange item {self.name!r}: {exc}") from None
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "fiu":
            raise ComponentError(f"exchange item {self.name!r}: dtype {self.dtype!r} is not numeric")
        object.__setattr__(self, "dtype", dtype.name)
        if self.valid_range is not None:
            low, high = (float(v) for v in self.valid_range)
            if not low <= high:
                raise ComponentError(f"exchange item {self.name!r}: valid_range {self.valid_range} has min > max")
            object.__setattr__(self, "valid_range", (low, high))

    @property
    def is_input(self) -> bool:
        return self.intent in ("in", "inout")

    @property
    def is_output(self) -> bool:
        return self.intent in ("out", "inout")
