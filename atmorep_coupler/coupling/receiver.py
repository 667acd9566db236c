"""``FieldReceiver``: a data sink component that imports fields on its grid and holds them.

The counterpart of a data component (CDEPS): it lets a coupling YAML regrid forcings onto a target
grid and write them with ``outputs`` (e.g. to inspect what a model would receive, or to prepare
training inputs on the model grid) without a model attached. Imported values stay as they are
until the next import; before the first one they are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atmorep_coupler.component.base import Component
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.errors import ConfigError
from components.forcing import GridConfig

__all__ = ["FieldReceiver", "FieldReceiverConfig", "ReceivedField"]


@dataclass(frozen=True)
class ReceivedField:
    """One import: its name, units and CF standard name; ``scalar`` for a global value."""

    name: str
    """Import name."""
    units: str
    """Its units (UDUNITS string)."""
    standard_name: str = ""
    """CF standard name; default none (a field name is not a standard name)."""
    scalar: bool = False
    """A global value on the scalar grid instead of a field on ``grid``."""
    levels: tuple[float, ...] = ()
    """Pressure levels (hPa) of a field on ``grid`` with a vertical axis (as its producer's); empty: one level."""


@dataclass(frozen=True, kw_only=True)
class FieldReceiverConfig(ComponentConfig):
    grid: GridConfig | None = None
    """The grid the fields arrive on; required unless every field is scalar."""
    fields: list[ReceivedField]
    """The imports to hold."""

    def validate(self) -> None:
        super().validate()
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ConfigError(f"fields: names must be unique, got {names}")
        if self.grid is None and any(not f.scalar for f in self.fields):
            raise ConfigError("grid: required for fields that are not scalar")


class FieldReceiver(Component):
    """Holds the last imported value of each configured field (module docstring)."""

    config_class = FieldReceiverConfig
    partial_steps = True

    def _initialize(self, config: FieldReceiverConfig) -> None:
        self._grid_map_local = {1: SCALAR_GRID}
        horizontal = config.grid.build() if config.grid is not None else None
        if horizontal is not None:
            self._grid_map_local[0] = ComponentGrid(horizontal)
        level_grids = {}  # a grid id per set of levels, after 0 (no levels) and 1 (scalar)
        for levels in dict.fromkeys(tuple(f.levels) for f in config.fields if f.levels and not f.scalar):
            level_grids[levels] = len(self._grid_map_local)
            self._grid_map_local[level_grids[levels]] = ComponentGrid(horizontal, levels=levels)
        self._item_list = [
            ExchangeItem(f.name, f.standard_name, f.units, 1 if f.scalar else level_grids.get(tuple(f.levels), 0),
                         "forcing", intent="in")
            for f in config.fields
        ]
        self._values = {
            item.name: np.full(self._grid_map_local[item.grid].shape, np.nan) for item in self._item_list
        }
        self._expose(self._grid_map_local, self._item_list, self._values)

    def _advance(self, dt: float) -> None:
        """Nothing evolves: the fields change only when they are imported."""
