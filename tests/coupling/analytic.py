"""A small real component whose exports are analytic functions of time, for hand-checked couplings.

``signal(t, lat, lon) = offset + rate * t / 3600 + amplitude * cos(lat) * cos(lon)`` (units
``units``), so averages, sums, minima and maxima over a window are computable by hand. ``wind``
(``u``, ``v``) is a solid-body rotation. ``received`` (``received_units``) is an import that the
component holds; ``received_sum`` accumulates what it saw at every step (a diagnostic of timing);
``u_received``/``v_received`` take a vector import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from atmorep_coupler.component.base import Component
from atmorep_coupler.component.items import ComponentGrid, ExchangeItem
from atmorep_coupler.component.settings import ComponentConfig
from atmorep_coupler.errors import ComponentError
from atmorep_coupler.regrid.grids import GaussianGrid, LatLonGrid


@dataclass(frozen=True, kw_only=True)
class AnalyticConfig(ComponentConfig):
    nlat: int = 6
    nlon: int = 12
    gaussian: bool = False
    lat_order: str = "descending"
    offset: float = 280.0
    rate: float = 1.0
    amplitude: float = 10.0
    units: str = "K"
    received_units: str = "K"
    seed: int = 0
    #: Raise when a step would pass this many hours (an interruption, for restart tests).
    fail_after_hours: float | None = None
    #: Wall-clock seconds to sleep per step (so a subprocess can be killed mid-run).
    sleep_seconds: float = 0.0


class Analytic(Component):
    config_class = AnalyticConfig

    def _initialize(self, config: AnalyticConfig) -> None:
        grid_cls = GaussianGrid if config.gaussian else LatLonGrid
        self._grid = ComponentGrid(grid_cls(config.nlat, config.nlon, lat_order=config.lat_order))
        h = self._grid.horizontal
        self._pattern = config.amplitude * np.cos(np.deg2rad(h.center_lat)) * np.cos(np.deg2rad(h.center_lon))
        self._item_list = [
            ExchangeItem("signal", "air_temperature", config.units, 0, "diagnostic"),
            ExchangeItem("u", "eastward_wind", "m s-1", 0, "diagnostic"),
            ExchangeItem("v", "northward_wind", "m s-1", 0, "diagnostic"),
            ExchangeItem("received", "received_field", config.received_units, 0, "prognostic", allow_nan=False),
            ExchangeItem("received_sum", "received_field_sum", config.received_units, 0, "diagnostic"),
            ExchangeItem("u_received", "received_eastward_wind", "m s-1", 0, "prognostic"),
            ExchangeItem("v_received", "received_northward_wind", "m s-1", 0, "prognostic"),
        ]
        shape = self._grid.shape
        lat = np.deg2rad(h.center_lat)
        self._state_arrays = {
            "signal": np.empty(shape),
            "u": 20.0 * np.cos(lat),  # solid-body rotation about the polar axis
            "v": np.zeros(shape),
            "received": np.zeros(shape),
            "received_sum": np.zeros(shape),
            "u_received": np.zeros(shape),
            "v_received": np.zeros(shape),
        }
        self._state_arrays["signal"][...] = self.signal_at(0.0)
        self._expose({0: self._grid}, self._item_list, self._state_arrays)

    def signal_at(self, seconds: float) -> np.ndarray:
        c = self.config
        return c.offset + c.rate * seconds / 3600.0 + self._pattern

    def _advance(self, dt: float) -> None:
        c = self.config
        if c.fail_after_hours is not None and self.get_current_time() + dt > c.fail_after_hours * 3600:
            raise ComponentError(f"{self.name}: interrupted on purpose after {c.fail_after_hours} h")
        time.sleep(c.sleep_seconds)
        s = self._state_arrays
        s["received_sum"] += s["received"]  # what this step was forced with
        s["signal"][...] = self.signal_at(self.get_current_time() + dt)
