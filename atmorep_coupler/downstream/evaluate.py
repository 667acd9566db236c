"""Scores of the downscaled field on held-out times: whole global fine fields against the fine truth, beside
bilinear and conservative interpolation of the coarse field, with the verification scorer.

Each held-out time window is cut into the neighbourhoods that tile the globe without overlap (the coarse
grid's rows and columns must be whole multiples of the neighbourhood's), all fed to the network at once
with the fine field fully hidden; the fine tokens are put back on the global fine grid and turned into
the field (bilinear baseline plus departure). Scores: :class:`~atmorep_coupler.verification.scores.ForecastScores`
(WeatherBench 2 definitions, latitude weights once; every time is a "start date", lead 0), and the power
spectrum by total wavenumber (:mod:`atmorep_coupler.regrid.harmonics`, up to ``nlon / 2 - 1``) of the truth, the ensemble members and each interpolation.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import torch

from atmorep_coupler.data.tokens import detokenize
from atmorep_coupler.downstream.pairs import DownscalingPairs, downscaling_masks
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.multiformer import Multiformer
from atmorep_coupler.regrid.harmonics import power_spectrum as _power
from atmorep_coupler.verification.scores import ForecastScores

__all__ = ["global_origins", "downscale", "score_downscaling"]


def power_spectrum(field: np.ndarray, latitudes: np.ndarray) -> np.ndarray:
    """Power by total wavenumber up to ``nlon / 2 - 1`` (past the fine truth's own truncation)."""
    return _power(field, latitudes, np.shape(field)[-1] // 2 - 1)


def global_origins(pairs: DownscalingPairs, t0: int) -> np.ndarray:
    """Origins ``[n, 3]`` of the neighbourhoods tiling the coarse grid at time index ``t0``."""
    _, ny, nx = pairs.sampler.extent
    nlat, nlon = pairs.coarse.latitudes.size, pairs.coarse.longitudes.size
    if nlat % ny or nlon % nx:
        raise ConfigError(f"a {ny}x{nx} neighbourhood does not tile the {nlat}x{nlon} grid; scoring needs whole tiles")
    rows, cols = np.meshgrid(np.arange(0, nlat, ny), np.arange(0, nlon, nx), indexing="ij")
    return np.stack([np.full(rows.size, t0), rows.ravel(), cols.ravel()], -1).astype(np.int64)


@torch.no_grad()
def downscale(model: Multiformer, pairs: DownscalingPairs, t0: int) -> np.ndarray:
    """Ensemble ``[nt, M, L, lat, lon]`` of the fine field in store units over the window at ``t0``."""
    origins = global_origins(pairs, t0)
    batch = pairs.read(origins)
    name = pairs.field.name
    masked = downscaling_masks(batch.tokens, name)
    out = model(masked, batch.meta)[name].members  # [N, M, t, y, x], targets in (b, L, T, Y, X) order
    f = pairs.field
    B, M = origins.shape[0], out.shape[1]
    tokens = out.reshape(B, f.num_levels, *f.num_tokens, M, *f.token_size).movedim(5, 1)  # [B, M, L, T, Y, X, t, y, x]
    cubes = detokenize(tokens.reshape(B * M, f.num_levels, *f.num_tokens, *f.token_size).numpy())
    cubes = cubes.reshape(B, M, *cubes.shape[1:])  # [B, M, L, nt, ny, nx]
    times, rows, cols = pairs.fine_window(origins)
    nt = times.shape[1]
    field = np.empty((nt, M, f.num_levels, pairs.fine.latitudes.size, pairs.fine.longitudes.size), np.float32)
    for b in range(B):  # tiles (16 on the default grid), each a block copy
        field[:, :, :, rows[b][:, None], cols[b][None, :]] = cubes[b].transpose(2, 0, 1, 3, 4)
    return pairs.baseline_at(times[0])[:, None] + field * pairs.std[None, None, :, None, None]


def score_downscaling(models: dict[str, Multiformer], pairs: DownscalingPairs, start: dt.datetime,
                      count: int | None = None) -> dict:
    """Scores of each model (ensembles) and of bilinear and conservative interpolation on the held-out
    windows from ``start`` (at most ``count``): RMSE, bias, CRPS, spread, spread/skill per level, and the
    spectra's ratio to the truth's by total wavenumber (members averaged over members and times)."""
    nt = pairs.sampler.extent[0]
    first = int(np.searchsorted(pairs.fine.times, np.datetime64(start, "ns")))
    starts = np.arange(first, pairs.fine.times.size - nt + 1, nt)[:count]
    if not starts.size:
        raise ConfigError(f"no held-out window of {nt} times from {start}")
    lat, L = pairs.fine.latitudes, pairs.field.num_levels
    M = next(iter(models.values())).config.ensemble_size if models else None
    scorers = {name: ForecastScores(1, L, lat, M) for name in models}
    scorers |= {name: ForecastScores(1, L, lat) for name in pairs.maps}
    spectra: dict[str, list] = {name: [] for name in [*scorers, "truth"]}
    for t0 in starts:
        times = t0 + np.arange(nt)
        truth = pairs.truth_at(times)
        spectra["truth"].append(power_spectrum(truth, lat).mean(0))
        for name, model in models.items():
            members = downscale(model, pairs, int(t0))
            scorers[name].add(0, members, truth)
            spectra[name].append(power_spectrum(members, lat).mean((0, 1)))
        for name, regridder in pairs.maps.items():
            interp = regridder.apply(pairs.coarse_at(times).astype(np.float64))
            scorers[name].add(0, interp, truth)
            spectra[name].append(power_spectrum(interp, lat).mean(0))
    truth_power = np.mean(spectra["truth"], axis=0)  # [L, l]
    result = {"times": int(starts.size * nt), "windows": int(starts.size), "levels": list(pairs.field.levels),
              "systems": {}}
    for name, scorer in scorers.items():
        scores = {k: v[0].tolist() for k, v in scorer.result().items()}
        scores["spectrum_ratio"] = (np.mean(spectra[name], axis=0) / truth_power).tolist()
        result["systems"][name] = scores
    result["truth_spectrum"] = truth_power.tolist()
    return result
