"""Batches of paired data for downscaling: coarse neighbourhoods of the pretrained fields and the fine
field's tokens over the same cube.

The coarse fields come from the coarse store through the training sampler (``NeighbourhoodSampler``: the
same area-proportional draws, normalization and metadata as pretraining). The fine field's window is the
one :func:`atmorep_coupler.data.paired.fine_origins` maps the coarse window to. Its values are the fine
truth minus bilinear interpolation (the project's :class:`~atmorep_coupler.regrid.Regridder`) of the
coarse store's field, divided per level by that departure's standard deviation over the training period
(kept with the fine-tuned weights, so inference undoes it exactly).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import torch

from atmorep_coupler.data.paired import coarse_grid, fine_origins
from atmorep_coupler.data.sampler import TRAIN_STREAM, NeighbourhoodSampler
from atmorep_coupler.data.store import ERA5Store, open_store
from atmorep_coupler.data.tokens import token_metadata, tokenize
from atmorep_coupler.errors import DataError
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.regrid import LatLonGrid, Regridder

__all__ = ["DownscalingPairs", "PairedBatch", "downscaling_masks", "interpolators"]


@dataclass
class PairedBatch:
    """Tokens and metadata of every field (the fine one included) and the coarse windows' origins."""

    tokens: dict[str, torch.Tensor]
    meta: dict[str, torch.Tensor]
    origins: np.ndarray  # [B, 3] time index, row, column on the coarse grid


def interpolators(coarse: ERA5Store, fine: ERA5Store) -> dict[str, Regridder]:
    """Bilinear and first-order conservative maps from the coarse store's grid to the fine store's."""
    src = LatLonGrid.from_centers(coarse.latitudes, coarse.longitudes)
    dst = LatLonGrid.from_centers(fine.latitudes, fine.longitudes)
    return {"bilinear": Regridder(src, dst, "bilinear", progress=False),
            "conservative": Regridder(src, dst, "conservative", edges="parallels", progress=False)}


def downscaling_masks(tokens: dict[str, torch.Tensor], fine: str) -> dict[str, MaskedField]:
    """The fine field entirely hidden (all its tokens are targets); every other field fully visible."""
    out = {}
    for name, x in tokens.items():
        hidden = torch.full(x.shape[:5], name == fine)
        inputs = torch.where(hidden[(...,) + (None,) * 3], torch.zeros((), dtype=x.dtype), x)
        out[name] = MaskedField(inputs, hidden, hidden, x[hidden])
    return out


class DownscalingPairs:
    """Paired batches (module docs). ``base``: the pretrained model's config; ``field``: the fine field
    (``grid_refinement`` > 1); ``start``/``end``: the period windows are drawn from; ``std``: the per-level
    departure scale (None: computed over ``[start, end]``)."""

    def __init__(self, coarse: str, fine: str, base: ModelConfig, field: FieldConfig, *, batch_size: int,
                 start: dt.datetime | None = None, end: dt.datetime | None = None, seed: int = 0,
                 stream: int = TRAIN_STREAM, std: np.ndarray | None = None, samples_per_window: int = 4):
        self.coarse, self.fine = open_store(coarse), open_store(fine)
        self.field, self.r = field, field.grid_refinement
        if not np.array_equal(self.coarse.times, self.fine.times):
            raise DataError(f"stores {coarse!r} and {fine!r}: time axes differ; a pair needs the same times")
        ny, nx = self.coarse.latitudes.size, self.coarse.longitudes.size
        if (self.fine.latitudes.size, self.fine.longitudes.size) != (self.r * ny, self.r * nx):
            raise DataError(f"store {fine!r}: grid {self.fine.latitudes.size}x{self.fine.longitudes.size} is not "
                            f"{self.r} times the coarse {ny}x{nx}")
        self.sampler = NeighbourhoodSampler(self.coarse, base, batch_size=batch_size, start=start, end=end,
                                            seed=seed, stream=stream, samples_per_window=samples_per_window)
        var = self.fine.resolve(field.variable)
        levels = list(field.levels) or None
        self.truth = self.fine.read(var, levels=levels)  # [time, L, lat, lon] physical
        coarse_values = self.coarse.read(self.coarse.resolve(field.variable), levels=levels)
        self.maps = interpolators(self.coarse, self.fine)
        self.baseline = self.maps["bilinear"].apply(coarse_values.astype(np.float64)).astype(np.float32)
        self.coarse_values = coarse_values
        departure = self.truth - self.baseline
        if std is None:
            used = self.sampler.time_starts[:, None] + np.arange(self.sampler.extent[0])
            std = departure[np.unique(used)].std(axis=(0, 2, 3))
        self.std = np.asarray(std, dtype=np.float32)
        self.departure = departure / self.std[None, :, None, None]

    def fine_window(self, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time, row and column indices ``[B, n]`` of the fine windows of coarse ``origins``."""
        nt, ny, nx = self.field.neighbourhood
        fo = fine_origins(origins, self.r)
        times = fo[:, :1] + np.arange(nt)
        rows = fo[:, 1:2] + np.arange(ny)
        cols = (fo[:, 2:3] + np.arange(nx)) % self.fine.longitudes.size
        return times, rows, cols

    def read(self, origins: np.ndarray) -> PairedBatch:
        batch = self.sampler.read(origins)
        times, rows, cols = self.fine_window(origins)
        cube = self.departure[times[:, :, None, None], :, rows[:, None, :, None], cols[:, None, None, :]]
        cube = np.moveaxis(cube, -1, 1)  # [B, L, nt, ny, nx]
        f = self.field
        tokens = dict(batch.tokens)
        meta = dict(batch.meta)
        tokens[f.name] = torch.from_numpy(tokenize(np.ascontiguousarray(cube), f.token_size).copy())
        meta[f.name] = torch.from_numpy(token_metadata(self.fine.times[times], self.fine.latitudes[rows],
                                                       self.fine.longitudes[cols], f.levels, f.token_size))
        return PairedBatch(tokens, meta, np.asarray(origins))

    def batch(self, index: int) -> PairedBatch:
        return self.read(self.sampler.draw(index))

    def physical(self, departure: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Normalized departures ``[..., L, lat, lon]`` on the whole fine grid at time indices ``times``
        (leading axis) -> the fine field in store units: bilinear baseline plus departure times std."""
        return self.baseline[times] + departure * self.std[:, None, None]

