"""``NativeComponent``: what the coupling driver needs of a component, as a protocol.

The driver steps components, moves fields between them with units, and saves and restores them; it
never needs the BMI's flat buffers. Every :class:`~atmorep_coupler.component.base.Component` satisfies
the protocol, and so does :class:`~atmorep_coupler.coupling.transport.RayComponent`, which forwards the
same calls to a component living in a Ray actor; the driver is typed against the protocol, so either
(or a component of another framework with these methods) can be coupled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import xarray as xr

from atmorep_coupler.component.items import ComponentGrid, ExchangeItem

__all__ = ["NativeComponent"]


@runtime_checkable
class NativeComponent(Protocol):
    """A steppable component with labelled fields (see the module docstring)."""

    @property
    def name(self) -> str:
        """The component's name (its key in a coupling YAML)."""

    @property
    def grids(self) -> dict[int, ComponentGrid]:
        """The grids by id; ``.horizontal`` has the bounds and areas for regridding."""

    def exchange_items(self) -> tuple[ExchangeItem, ...]:
        """Every field it imports or exports: name, standard name, units, grid, role."""

    def step(self, n: int = 1) -> None:
        """Advance ``n`` time steps."""

    def get_field(self, name: str, units: str | None = None) -> xr.DataArray:
        """A copy of a field at the current time, optionally converted to ``units``."""

    def set_field(self, name: str, data: xr.DataArray | np.ndarray, units: str | None = None) -> None:
        """Import a field (units from ``units`` or ``data.attrs``), checked and converted."""

    def save_state(self, path: str | Path) -> Path:
        """Write an exact restart file."""

    def load_state(self, path: str | Path) -> None:
        """Restore a restart file written by ``save_state``."""

    def finalize(self) -> None:
        """Release resources."""
