"""Batches of paired data for downscaling: coarse neighbourhoods of the pretrained fields and the fine
field's tokens over the same cube.

The coarse fields come from the coarse store through the training sampler (``NeighbourhoodSampler``: the
same area-proportional draws, normalization and metadata as pretraining). The fine field's window is the
one :func:`atmorep_coupler.data.paired.fine_origins` maps the coarse window to. Its values are the fine
truth minus bilinear interpolation (the project's :class:`~atmorep_coupler.regrid.Regridder`) of the
coarse store's field, divided per level by that departure's standard deviation over the training period
(kept with the fine-tuned weights, so inference undoes it exactly).

**Memory.** Nothing of the record is held whole: the fine and coarse fields are read from the stores a
time chunk at a time (the fine store's zarr chunks along time, so a read never splits a chunk), the
baseline and departure computed per chunk, and the few chunks last used kept (:data:`CACHED_CHUNKS`). The
departure scale is one streaming pass over the training period's chunks (per-chunk means and squared
deviations merged in float64). Per time the values are those of the whole record in memory, bit for bit
(``tests/downstream/test_downscaling.py``).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from atmorep_coupler.data.paired import fine_origins
from atmorep_coupler.data.sampler import TRAIN_STREAM, NeighbourhoodSampler
from atmorep_coupler.data.store import ERA5Store, open_store
from atmorep_coupler.data.tokens import token_metadata, tokenize
from atmorep_coupler.errors import DataError
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.regrid import LatLonGrid, Regridder

__all__ = ["CACHED_CHUNKS", "DownscalingPairs", "PairedBatch", "downscaling_masks", "interpolators", "time_chunk"]

#: Time chunks of the paired record kept in memory (truth, coarse field, baseline of each).
CACHED_CHUNKS = 4


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


def time_chunk(store: ERA5Store, var: str) -> int:
    """Times per zarr chunk of ``var`` in ``store`` (the whole axis when the store does not say)."""
    chunks = store.dataset[var].encoding.get("chunks") or store.dataset[var].encoding.get("preferred_chunks")
    if isinstance(chunks, dict):
        chunks = [chunks.get("time", store.times.size)]
    return int(chunks[0]) if chunks else int(store.times.size)


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
        try:
            self._vars = (self.fine.resolve(field.variable), self.coarse.resolve(field.variable))
        except DataError as exc:
            raise DataError(f"{exc}; the downscaled variable (finetune --variable) must be in both stores of the "
                            "pair") from None
        ny, nx = self.coarse.latitudes.size, self.coarse.longitudes.size
        if (self.fine.latitudes.size, self.fine.longitudes.size) != (self.r * ny, self.r * nx):
            raise DataError(f"store {fine!r}: grid {self.fine.latitudes.size}x{self.fine.longitudes.size} is not "
                            f"{self.r} times the coarse {ny}x{nx} of {coarse!r}; a pair is a fine store and its "
                            f"coarsening (make-paired writes both), {self.r} times finer (finetune --refinement)")
        self.sampler = NeighbourhoodSampler(self.coarse, base, batch_size=batch_size, start=start, end=end,
                                            seed=seed, stream=stream, samples_per_window=samples_per_window)
        self._levels = list(field.levels) or None
        self.chunk = time_chunk(self.fine, self._vars[0])
        self._chunks: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self.maps = interpolators(self.coarse, self.fine)
        if std is None:
            used = self.sampler.time_starts[:, None] + np.arange(self.sampler.extent[0])
            std = self._departure_std(np.unique(used))
        self.std = np.asarray(std, dtype=np.float32)

    # ---------------------------------------------------------------------------- the record, lazily
    def _record_chunk(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Truth, coarse field and bilinear baseline ``[c, L, lat, lon]`` (float32) of time chunk ``k``."""
        if k in self._chunks:
            self._chunks.move_to_end(k)
            return self._chunks[k]
        times = slice(k * self.chunk, min((k + 1) * self.chunk, self.fine.times.size))
        truth = self.fine.read(self._vars[0], time=times, levels=self._levels)  # physical
        coarse = self.coarse.read(self._vars[1], time=times, levels=self._levels)
        baseline = self.maps["bilinear"].apply(coarse.astype(np.float64)).astype(np.float32)
        self._chunks[k] = (truth, coarse, baseline)
        if len(self._chunks) > CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return self._chunks[k]

    def _take(self, times: np.ndarray, which: int) -> np.ndarray:
        """Record ``which`` (0 truth, 1 coarse field, 2 baseline) at time indices ``times`` (any shape):
        ``[*times.shape, L, lat, lon]``."""
        times = np.asarray(times, dtype=np.int64)
        flat, parts = times.ravel(), times.ravel() // self.chunk
        out = None
        for k in np.unique(parts):
            values = self._record_chunk(int(k))[which]
            if out is None:
                out = np.empty((flat.size, *values.shape[1:]), dtype=values.dtype)
            pick = parts == k
            out[pick] = values[flat[pick] - k * self.chunk]
        return out.reshape(*times.shape, *out.shape[1:])

    def truth_at(self, times: np.ndarray) -> np.ndarray:
        """The fine truth (store units) at time indices ``times``."""
        return self._take(times, 0)

    def coarse_at(self, times: np.ndarray) -> np.ndarray:
        """The coarse store's field at ``times``."""
        return self._take(times, 1)

    def baseline_at(self, times: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the coarse field to the fine grid at ``times``."""
        return self._take(times, 2)

    def departure_at(self, times: np.ndarray) -> np.ndarray:
        """The normalized departure (the fine field's values) at ``times``."""
        return (self.truth_at(times) - self.baseline_at(times)) / self.std[:, None, None]

    def _departure_std(self, times: np.ndarray) -> np.ndarray:
        """Per-level standard deviation of ``truth - baseline`` over ``times``, streamed chunk by chunk
        (per-chunk counts, means and squared deviations merged in float64: Chan et al.'s update)."""
        count, mean, m2 = 0, 0.0, 0.0
        for k in np.unique(times // self.chunk):
            inside = times[times // self.chunk == k]
            d = (self.truth_at(inside) - self.baseline_at(inside)).astype(np.float64)
            n = d.shape[0] * d.shape[2] * d.shape[3]
            part_mean = d.mean(axis=(0, 2, 3))
            part_m2 = ((d - part_mean[:, None, None]) ** 2).sum(axis=(0, 2, 3))
            delta = part_mean - mean
            mean = mean + delta * n / (count + n)
            m2 = m2 + part_m2 + delta**2 * count * n / (count + n)
            count += n
        return np.sqrt(m2 / count)

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
        unique, where = np.unique(times, return_inverse=True)
        departure = self.departure_at(unique)  # [U, L, lat, lon]: the windows' times only
        where = where.reshape(times.shape)
        cube = departure[where[:, :, None, None], :, rows[:, None, :, None], cols[:, None, None, :]]
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
        return self.baseline_at(times) + departure * self.std[:, None, None]

