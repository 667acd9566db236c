"""The coarse classical model run beside the truth, nudged toward it: the ``coarse_*`` conditioning.

The multiformer is conditioned on a coarse classical model (``components/classical.py``: dinosaur
Held–Suarez at T15). To learn what that model really delivers -- its truncation, its biases and its
lag -- it must see such a model in training, not the truth coarsened. :class:`NudgedCoarseRun` is that
model (the same :class:`~atmorep_coupler.data.held_suarez.HeldSuarezModel` at the same resolution,
levels and time step) stepped beside the truth and relaxed toward it exactly as a two-way coupled run
relaxes the classical component toward the multiformer:

- at each output time ``t`` the truth's temperature and winds on the nudging levels
  (:attr:`CoarseRunConfig.levels_hPa`, the multiformer's) are mapped to the model's Gaussian grid with
  the coupler's conservative map (``conservative_normed``, u and v as scalars) and become the nudging
  target (:meth:`HeldSuarezModel.nudging_target`, surface pressure not nudged);
- the model then steps to ``t + Δt`` relaxing toward that target with time scale ``tau_hours``.

So the coarse state at ``t + Δt`` has seen the truth up to ``t`` only: no future truth leaks into
the conditioning (what the coupled run sees: the classical model steps ``[t, t + Δt)`` toward the
multiformer's state at ``t``). Its pressure-level fields are mapped back to the truth's grid with the
same conservative map the coupler uses for ``coarse_<field>`` imports and written as
``coarse_<field>`` (:data:`COARSE_FIELDS`) beside the truth.
"""

from __future__ import annotations

import numpy as np

from atmorep_coupler.data.conditioning import COARSE_METHOD, COARSE_PREFIX
from atmorep_coupler.data.held_suarez import NUDGING_FIELDS, HeldSuarezModel, ModelConfig
from atmorep_coupler.regrid import LatLonGrid, Regridder

__all__ = ["COARSE_FIELDS", "COARSE_METHOD", "COARSE_PREFIX", "NudgedCoarseRun"]

#: Fields of the coarse model written beside the truth (as ``coarse_<field>``).
COARSE_FIELDS = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind", "surface_pressure")


class NudgedCoarseRun:
    """A :class:`HeldSuarezModel` at the coarse resolution, relaxed toward a truth on ``grid`` (see the module
    docstring). ``config`` is a :class:`~atmorep_coupler.data.default.CoarseRunConfig`; ``levels_hPa``: the
    pressure levels of the truth fields handed to :meth:`nudge_toward` and of the diagnosed output."""

    def __init__(self, config, scenario, grid: LatLonGrid, levels_hPa) -> None:
        self.config = config
        self.levels = tuple(float(p) for p in levels_hPa)
        missing = [p for p in config.levels_hPa if float(p) not in self.levels]
        if missing:
            from atmorep_coupler.errors import ConfigError

            raise ConfigError(f"coarse.levels_hPa: {missing} are not among the output levels {list(self.levels)}")
        self._target_index = [self.levels.index(float(p)) for p in config.levels_hPa]
        self.model = HeldSuarezModel(
            ModelConfig(resolution=config.resolution, sigma_levels=config.sigma_levels, pressure_levels_hPa=self.levels),
            scenario,
        )
        self._down = Regridder(grid, self.model.gaussian_grid, COARSE_METHOD, progress=False)
        self._up = Regridder(self.model.gaussian_grid, grid, COARSE_METHOD, progress=False)

    @property
    def tau_seconds(self) -> float:
        return 3600.0 * float(self.config.tau_hours)

    def target_fields(self, truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The truth's nudging fields ``[level, lat, lon]`` (all output levels, SI units, on the truth's
        grid) at the nudging levels, mapped to the model's Gaussian grid as the coupler maps them."""
        # float32, as the coupler hands the classical component its (float32) imports
        return {name: self._down.apply(np.asarray(truth[name], np.float64)[self._target_index]).astype(np.float32)
                for name in NUDGING_FIELDS}

    def nudge_toward(self, truth: dict[str, np.ndarray]) -> None:
        """From now until the next call, relax toward ``truth`` (the state at the model's current time)."""
        target, weights = self.model.nudging_target(self.target_fields(truth), tuple(self.config.levels_hPa),
                                                    reach_hPa=self.config.reach_hPa)
        self.model.set_nudging(target, self.tau_seconds, weights=weights)

    def step_to(self, seconds_since_epoch: float) -> None:
        """Step (relaxing toward the current target) to the given model time."""
        self.model.step(self.model.steps_per(seconds_since_epoch) - self.model.step_index)

    def diagnose(self) -> dict[str, np.ndarray]:
        """``coarse_<field>`` on the truth's grid (float32; surface pressure ``[lat, lon]``)."""
        fields = self.model.diagnose("gaussian")
        out = {}
        for name in COARSE_FIELDS:
            values = self._up.apply(fields[name].astype(np.float64)).astype(np.float32)
            out[COARSE_PREFIX + name] = values[0] if name == "surface_pressure" else values
        return out
