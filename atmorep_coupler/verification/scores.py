"""WeatherBench 2 scores of gridded forecasts on whole global fields, accumulated lead by lead.

Definitions (Rasp et al. 2024, WeatherBench 2), per field, level and lead, over start dates ``s``:

- **latitude weights** ``w_i`` proportional to the band area of row ``i`` (bounds midway between
  neighbouring latitudes and at the poles, ``sin(upper) - sin(lower)``; about ``cos φ_i``),
  normalized to mean 1 over latitude. They are the only weights, applied once; every longitude
  counts alike;
- ``MSE_s = mean_ij w_i (f - o)²``; **RMSE** ``= sqrt(mean_s MSE_s)`` (the root after the mean over
  start dates); **bias** ``= mean_s mean_ij w_i (f - o)``;
- **ACC** (anomaly correlation) against a climatology ``c``, per start date
  ``Σ w f' o' / sqrt(Σ w f'² · Σ w o'²)`` with ``f' = f - c``, ``o' = o - c`` (uncentred), then the
  mean over start dates (undefined, NaN, for a forecast that *is* the climatology);
- ensembles of ``M`` members: RMSE, bias and ACC of the ensemble mean; **CRPS** the fair kernel
  estimator ``mean_m |X_m - y| - Σ_{m,n} |X_m - X_n| / (2 M (M - 1))`` (area-weighted mean, then the
  mean over start dates); **spread** ``sqrt(mean_s mean_ij w_i var(X))`` with the unbiased member
  variance; **spread/skill** ``= sqrt((M + 1)/M) · spread / RMSE``, 1 for a calibrated ensemble.

:class:`ForecastScores` takes one lead of one forecast system and field at a time (``add``), so
forecasts of any length are scored without holding them; its sums are per start date, so
``add`` may also be called several times per lead with disjoint start dates.
"""

from __future__ import annotations

import numpy as np
import torch

from atmorep_coupler.data.sampler import row_areas
from atmorep_coupler.model.losses import ensemble_crps

__all__ = ["ForecastScores", "METRICS", "latitude_weights"]

#: Scores per lead and level, in the order they are reported.
METRICS = ("rmse", "bias", "acc", "crps", "spread", "spread_skill")


def latitude_weights(latitudes: np.ndarray) -> np.ndarray:
    """WeatherBench 2's latitude weights: band areas normalized to mean 1 over the rows."""
    area = row_areas(np.asarray(latitudes, dtype=np.float64))
    return area / area.mean()


class ForecastScores:
    """Sums of one forecast system and field over start dates, per lead and level.

    ``leads``: number of leads; ``levels``: number of levels (1 for a surface field);
    ``latitudes``: the grid's row latitudes; ``ensemble_size``: members, or None for a
    deterministic forecast.
    """

    def __init__(self, leads: int, levels: int, latitudes: np.ndarray, ensemble_size: int | None = None) -> None:
        self.ensemble_size = ensemble_size
        self.weights = latitude_weights(latitudes)[:, None]  # [lat, 1]
        shape = (leads, levels)
        self._sums = {name: np.zeros(shape) for name in ("mse", "error", "acc", "acc_count", "crps", "var")}
        self.count = np.zeros(shape, dtype=np.int64)

    def add(self, lead: int, forecast: np.ndarray, truth: np.ndarray, climatology: np.ndarray | None = None) -> None:
        """Score lead ``lead`` of start dates ``S``: ``forecast [S, L, lat, lon]`` (``[S, M, L, lat, lon]``
        for an ensemble), ``truth`` and ``climatology`` ``[S, L, lat, lon]`` (no climatology: no ACC)."""
        forecast, truth = np.asarray(forecast, dtype=np.float64), np.asarray(truth, dtype=np.float64)
        members = forecast if self.ensemble_size else None
        if members is not None:
            if members.ndim != truth.ndim + 1 or members.shape[1] != self.ensemble_size:
                raise ValueError(f"ensemble forecast must be [S, {self.ensemble_size}, L, lat, lon], got {members.shape}")
            forecast = members.mean(axis=1)
        if forecast.shape != truth.shape:
            raise ValueError(f"forecast {forecast.shape} and truth {truth.shape} differ")
        mean = self._area_mean  # [S, L]
        error = forecast - truth
        sums = self._sums
        sums["mse"][lead] += mean(error**2).sum(0)
        sums["error"][lead] += mean(error).sum(0)
        self.count[lead] += truth.shape[0]
        if climatology is not None:
            f, o = forecast - climatology, truth - climatology
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = mean(f * o) / np.sqrt(mean(f**2) * mean(o**2))
            valid = np.isfinite(acc)
            sums["acc"][lead] += np.where(valid, acc, 0.0).sum(0)
            sums["acc_count"][lead] += valid.sum(0)
        if members is not None:
            crps = ensemble_crps(torch.from_numpy(members), torch.from_numpy(truth)).numpy()
            sums["crps"][lead] += mean(crps).sum(0)
            sums["var"][lead] += mean(members.var(axis=1, ddof=1)).sum(0)

    def _area_mean(self, x: np.ndarray) -> np.ndarray:
        """``mean_ij w_i x`` over the last two dims (lat, lon)."""
        return (x * self.weights).mean(axis=(-2, -1))

    def result(self) -> dict[str, np.ndarray]:
        """``{metric: [leads, levels]}`` (NaN where nothing was scored or the metric does not apply)."""
        n = np.where(self.count > 0, self.count, np.nan)
        s = self._sums
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {"rmse": np.sqrt(s["mse"] / n), "bias": s["error"] / n,
                   "acc": np.where(s["acc_count"] > 0, s["acc"] / s["acc_count"], np.nan)}
            M = self.ensemble_size
            if M:
                out["crps"] = s["crps"] / n
                out["spread"] = np.sqrt(s["var"] / n)
                out["spread_skill"] = np.sqrt((M + 1) / M) * out["spread"] / out["rmse"]
            else:
                out |= {name: np.full_like(out["rmse"], np.nan) for name in ("crps", "spread", "spread_skill")}
        return out

