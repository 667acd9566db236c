"""The SST proxy of the default dataset as a computed forcing component (kind
``components.sst_proxy:SSTProxy``).

The default data's ``sea_surface_temperature`` is the Held–Suarez surface equilibrium temperature
(:func:`atmorep_coupler.data.forcings.equilibrium_temperature` at p = p0: T0 + ΔT - ΔTy sin²(φ - φh(t)),
Held & Suarez 1994 eq. 3 with the seasonal heating latitude φh). Computing it here, instead of reading
it from the truth store, lets a scenario change reach it: the warming ΔT comes from the import
``co2_equivalent`` (ppm) through :func:`~atmorep_coupler.data.forcings.warming_from_co2`, exactly as the
classical model takes it, so one line in the CO2 scenario (``warming_offset_K: 4.0``) warms the SST
seen by the multiformer and the surface of the classical model alike. Until the first import the
warming follows ``scenario`` (the training data's ramp); keep its constants equal to the producer's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atmorep_coupler.component.base import Component
from atmorep_coupler.component.clock import to_cftime
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.data import forcings
from atmorep_coupler.data.default import VARIABLE_ATTRS
from components.forcing import GridConfig, RampConfig

__all__ = ["SSTProxy", "SSTProxyConfig"]

SST, CO2 = "sea_surface_temperature", "co2_equivalent"
FIELD_GRID, SCALAR_GRID_ID = 0, 1


@dataclass(frozen=True, kw_only=True)
class SSTProxyConfig(ComponentConfig):
    """``grid``: where to compute; ``scenario``: seasonal clock, CO2 conversion constants and the
    warming used before the first ``co2_equivalent`` import."""

    grid: GridConfig
    """The grid to compute on."""
    scenario: RampConfig = field(default_factory=RampConfig)
    """Seasonal clock, CO2 conversion constants and the warming used before the first co2_equivalent import."""


class SSTProxy(Component):
    """Zonally uniform SST proxy (K) at the current date and imported CO2-equivalent concentration."""

    config_class = SSTProxyConfig
    partial_steps = True

    def _initialize(self, config: SSTProxyConfig) -> None:
        self._scenario = config.scenario.scenario()
        self._epoch = to_cftime(self._scenario.epoch, config.calendar, what="scenario.epoch")
        self._grid_table = {FIELD_GRID: ComponentGrid(config.grid.build()), SCALAR_GRID_ID: SCALAR_GRID}
        self._lat = np.deg2rad(self._grid_table[FIELD_GRID].horizontal.center_lat[:, :1])
        attrs = VARIABLE_ATTRS[SST]
        self._item_list = [
            ExchangeItem(SST, "sea_surface_temperature", attrs["units"], FIELD_GRID, "forcing", intent="out",
                         long_name=attrs["long_name"]),
            ExchangeItem(CO2, "mole_fraction_of_carbon_dioxide_in_air", VARIABLE_ATTRS[CO2]["units"],
                         SCALAR_GRID_ID, "forcing", long_name="CO2-equivalent concentration (sets the warming)",
                         valid_range=(1.0, 1.0e5)),
        ]
        self._arrays = {SST: np.empty(self._grid_table[FIELD_GRID].shape), CO2: np.zeros(())}
        self._expose(self._grid_table, self._item_list, self._arrays)
        self._refresh(0.0)

    def _days(self, time: float) -> float:
        return (self.datetime_at(time) - self._epoch).total_seconds() / 86400.0

    def _refresh(self, time: float) -> None:
        days = self._days(time)
        if not self.was_imported(CO2):
            self._arrays[CO2][...] = forcings.co2_equivalent(days, self._scenario)
        warming = forcings.warming_from_co2(self._arrays[CO2][()], self._scenario)
        sst = forcings.equilibrium_temperature(self._lat, 1.0, days, self._scenario, warming_K=warming)
        self._arrays[SST][...] = np.broadcast_to(sst, self._arrays[SST].shape)

    def _advance(self, dt: float) -> None:
        self._refresh(self.get_current_time() + dt)
