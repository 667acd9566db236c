"""A new component in ~40 lines: a slab ocean (docs/components.md, "Writing a component").

A mixed-layer temperature ``sst`` relaxes towards an imported equilibrium temperature ``t_eq``,

    dT/dt = (T_eq - T) / tau,

integrated exactly over any step with T_eq held constant over it:
``T <- T_eq + (T - T_eq) exp(-dt / tau)``. Because the update is exact for any ``dt``, the component
sets ``partial_steps = True`` and ``update_until`` lands on any time.

Use it from Python (``SlabOcean.from_config({...})``), from a BMI host (``initialize("ocean.yaml")``)
or in a coupling YAML as ``kind: examples.new_component:SlabOcean`` (examples/slab_ocean_coupled.yaml;
run from the repository root or put it on ``PYTHONPATH``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from atmorep_coupler.component import Component, ComponentConfig, ComponentGrid, ExchangeItem
from atmorep_coupler.regrid.grids import LatLonGrid


@dataclass(frozen=True, kw_only=True)
class SlabOceanConfig(ComponentConfig):
    nlat: int = 18
    nlon: int = 36
    relaxation_time: dt.timedelta = dt.timedelta(days=30)
    initial_temperature: float = 290.0


class SlabOcean(Component):
    """Mixed-layer temperature relaxing to an imported equilibrium: dT/dt = (T_eq - T) / tau."""

    config_class = SlabOceanConfig
    partial_steps = True  # the exact solution holds for any step length

    def _initialize(self, config):
        self.grid = LatLonGrid(config.nlat, config.nlon)
        self.sst = np.full(self.grid.shape, config.initial_temperature)
        self.t_eq = self.sst.copy()
        self.tau = config.relaxation_time.total_seconds()
        self._expose(
            grids={0: ComponentGrid(self.grid)},
            items=[
                ExchangeItem("sst", "sea_surface_temperature", "K", 0, "prognostic", valid_range=(200.0, 350.0)),
                ExchangeItem("t_eq", "equilibrium_temperature", "K", 0, "forcing", valid_range=(200.0, 350.0)),
            ],
            state=lambda: {"sst": self.sst, "t_eq": self.t_eq},  # attributes: looked up live
        )

    def _advance(self, dt):
        self.sst[...] = self.t_eq + (self.sst - self.t_eq) * np.exp(-dt / self.tau)
