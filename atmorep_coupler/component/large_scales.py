"""Large-scale relaxation of the multiformer toward its coarse model: spectral nudging at run time.

A network trained on one step leans on its own past; in a rollout that past carries the network's
errors, which grow faster than the coarse classical model's (docs/verification.md: better than the coarse
model to about one day, worse after). The coarse model keeps its large scales on track for days and
responds to forcing, but lacks the small scales. Relaxing only the hybrid's large scales toward the coarse
model's state combines the two, as regional models are spectrally nudged toward their driving model:
after each step, with ``P`` the triangular truncation at total wavenumber ``truncation``
(:func:`atmorep_coupler.regrid.harmonics.low_pass`),

    x ← x + (1 - e^{-Δt/τ}) · P(c - x)

where ``x`` is a predicted field at the step's target time (each ensemble member) and ``c`` its
``coarse_<field>`` conditioning import at the same time, both in physical units on the component's grid.
Scales beyond ``truncation`` stay the network's. The exact exponential factor makes the relaxation the
solution of ``dx/dt = -P(x - c)/τ`` over one step with ``c`` held, so it cannot overshoot for any Δt/τ.

With ``bias`` (a store written by ``python -m atmorep_coupler.analysis.coarse_bias`` from a run of the coarse
model alone in the training period), ``c`` is first corrected by the coarse model's monthly zonal-mean error
``b(month, level, latitude)``, interpolated linearly between the middles of the months: the hybrid is then
relaxed toward the coarse model's weather, not toward its climate's known offsets.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from atmorep_coupler.config import Validated
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.regrid.harmonics import low_pass

__all__ = ["CoarseBias", "LargeScaleNudging", "relax_large_scales"]


@dataclass(frozen=True)
class LargeScaleNudging(Validated):
    """Relax the predicted fields' large scales toward the coarse model's state after each step (spectral nudging,
    ``x ← x + (1 - e^{-Δt/τ}) P(c - x)`` with ``P`` the truncation at ``truncation``); off by default."""

    tau: _dt.timedelta | None = None
    """Relaxation time scale (ISO 8601 duration, e.g. PT24H); null: no relaxation."""
    truncation: int = 10
    """Largest total wavenumber relaxed (triangular truncation); smaller scales stay the network's."""
    bias: Path | None = None
    """The coarse model's monthly zonal-mean error (zarr, from ``python -m atmorep_coupler.analysis.coarse_bias``),
    subtracted from its state before relaxing; null: none."""

    def validate(self) -> None:
        if self.tau is not None and self.tau.total_seconds() <= 0:
            raise ConfigError(f"tau: must be a positive duration, got {self.tau}")
        if self.truncation < 0:
            raise ConfigError(f"truncation: must be >= 0, got {self.truncation}")

    def weight(self, dt_seconds: float) -> float:
        """The fraction ``1 - exp(-Δt/τ)`` of the large-scale departure removed in one step of ``dt_seconds``."""
        return 0.0 if self.tau is None else float(-np.expm1(-dt_seconds / self.tau.total_seconds()))


def relax_large_scales(state: np.ndarray, coarse: np.ndarray, latitudes: np.ndarray, weight: float,
                       truncation: int) -> np.ndarray:
    """``state [..., lat, lon]`` relaxed by ``weight`` toward ``coarse`` (broadcast against it) in the
    harmonics up to ``truncation``; float64 arithmetic, returned in ``state``'s dtype."""
    departure = np.asarray(coarse, np.float64) - np.asarray(state, np.float64)
    return (state + weight * low_pass(departure, latitudes, truncation)).astype(np.asarray(state).dtype)


class CoarseBias:
    """The coarse model's monthly zonal-mean error per field, read from ``path`` and checked against the
    component's levels and latitudes; :meth:`at` gives it for a month position."""

    def __init__(self, path: Path, fields: dict[str, tuple[float, ...]], latitudes: np.ndarray):
        try:
            ds = xr.open_zarr(path, consolidated=False)
        except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: large_scales.bias is not a readable bias store ({exc}); write one with "
                            "python -m atmorep_coupler.analysis.coarse_bias") from None
        self.table: dict[str, np.ndarray] = {}
        for name, levels in fields.items():
            if name not in ds:
                raise DataError(f"{path}: large_scales.bias has no variable {name!r} (it has {sorted(ds.data_vars)})")
            var = ds[name]
            if var.dims != ("month", "level", "latitude") or var.sizes["month"] != 12:
                raise DataError(f"{path}: {name!r} must be [month (12), level, latitude], got {dict(var.sizes)}")
            if not np.allclose(ds["latitude"].values, latitudes):
                raise DataError(f"{path}: {name!r} is on other latitudes than the component's grid")
            have = [float(p) for p in ds["level"].values]
            absent = [p for p in levels if p not in have]
            if absent:
                raise DataError(f"{path}: {name!r} has levels {have} hPa, not the field's {absent}")
            self.table[name] = var.sel(level=list(levels)).values.astype(np.float64)

    def at(self, name: str, month_position: float) -> np.ndarray:
        """``[level, latitude, 1]``: linear between the middles of the two months around ``month_position``."""
        low = int(np.floor(month_position)) % 12
        share = month_position - np.floor(month_position)
        table = self.table[name]
        return ((1.0 - share) * table[low] + share * table[(low + 1) % 12])[..., None]
