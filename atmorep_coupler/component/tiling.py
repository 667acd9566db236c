"""Global tiling of a lat-lon grid by overlapping neighbourhoods, and seamless blending back.

The multiformer sees one neighbourhood (``ny x nx`` grid points) at a time; a global step runs it on
tiles that cover the globe and stitches their predictions (atmorep.md §11.2, D24). The reference code
laid tiles from the North Pole with one extra row flush with the South Pole and left the stitching to
external code -- and its ``global_forecast`` left a strip uncovered (D15). Here:

- **Rows** never cross a pole (the model was trained on windows that stay inside the grid): the first
  tile row starts at the northernmost row, the last one ends at the southernmost, and the rows in
  between are spread evenly with a stride of at most ``ny - overlap_rows``.
- **Columns** wrap across the dateline (0°/360°): ``ceil(nlon / stride)`` tiles spread evenly round
  the circle, the last overlapping the first.
- Consecutive starts are at most one stride apart and a stride is at most the tile size, so every
  grid point lies in at least one tile (:meth:`GlobalTiling.coverage` counts them; tested).
- **Blending**: each tile weighs its points with a separable taper ``w(i) = sin²(π (i + ½) / n)`` per
  axis (a Hann window sampled at the cell centres: positive everywhere, small at the tile edges), and
  a point's value is ``Σ_tiles w·x / Σ_tiles w``. The weights fall smoothly to the edges, so a tile's
  influence fades out where the next one takes over: no seams. Identical tile values reproduce the
  field exactly (to round-off; blending accumulates in float64).

Everything is vectorised with index arrays: :meth:`gather` cuts all tiles at once, :meth:`blend`
scatter-adds them back with ``index_put_(accumulate=True)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from atmorep_coupler.errors import ConfigError

__all__ = ["GlobalTiling", "tile_starts", "taper"]


def tile_starts(n: int, size: int, stride: int, *, periodic: bool) -> np.ndarray:
    """Start indices of tiles of ``size`` points covering an axis of ``n`` points, evenly spread with
    gaps of at most ``stride``; on a periodic axis the tiles wrap and cover the circle."""
    if periodic:
        count = math.ceil(n / stride)
        return (np.arange(count) * n) // count
    if size >= n:
        return np.zeros(1, dtype=np.int64)
    count = math.ceil((n - size) / stride) + 1
    return np.round(np.arange(count) * (n - size) / (count - 1)).astype(np.int64)


def taper(n: int) -> np.ndarray:
    """Blending weights ``sin²(π (i + ½) / n)``, i = 0..n-1: positive, symmetric, smallest at the edges."""
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


class GlobalTiling:
    """Tiles of ``tile = (ny, nx)`` points over a global ``(nlat, nlon)`` grid (north-first rows,
    longitude periodic), overlapping by at least ``overlap = (rows, columns)`` points.

    ``origins [n_tiles, 2]`` (first row, first column), ``rows [n_tiles, ny]`` and ``cols [n_tiles, nx]``
    (grid indices, columns wrapped), ``weights [ny, nx]`` (the blending taper).
    """

    def __init__(self, nlat: int, nlon: int, tile: tuple[int, int], overlap: tuple[int, int]) -> None:
        (ny, nx), (oy, ox) = tile, overlap
        if not (0 < ny <= nlat and 0 < nx <= nlon):
            raise ConfigError(f"tiling: a neighbourhood of {ny}x{nx} points does not fit the {nlat}x{nlon} grid")
        if not (0 <= oy < ny and 0 <= ox < nx):
            raise ConfigError(
                f"tile_overlap: {[oy, ox]} points must be >= 0 and smaller than the neighbourhood {[ny, nx]}"
            )
        self.nlat, self.nlon, self.tile, self.overlap = nlat, nlon, (ny, nx), (oy, ox)
        row0 = tile_starts(nlat, ny, ny - oy, periodic=False)
        col0 = tile_starts(nlon, nx, nx - ox, periodic=True)
        self.origins = np.stack(np.meshgrid(row0, col0, indexing="ij"), -1).reshape(-1, 2)
        self.rows = torch.from_numpy(self.origins[:, :1] + np.arange(ny))
        self.cols = torch.from_numpy((self.origins[:, 1:] + np.arange(nx)) % nlon)
        self.weights = torch.from_numpy(np.outer(taper(ny), taper(nx)))

    @property
    def count(self) -> int:
        """Number of tiles."""
        return int(self.origins.shape[0])

    def gather(self, field: torch.Tensor, tiles: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """Cut tiles out of ``field [..., nlat, nlon]``: ``[n_tiles, ..., ny, nx]`` (columns wrap)."""
        rows = self.rows[tiles].to(field.device)
        cols = self.cols[tiles].to(field.device)
        return field[..., rows[:, :, None], cols[:, None, :]].movedim(-3, 0)

    def blend(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted average of tile values ``[n_tiles, ..., ny, nx]`` on the grid, in float64.

        ``mask`` (bool, like ``values``) says which tile points carry a value. Returns the blended
        field ``[..., nlat, nlon]`` and the weight sum (0 where no tile contributed; the field is 0 there).
        """
        if values.shape[0] != self.count or tuple(values.shape[-2:]) != self.tile:
            raise ValueError(f"blend needs [{self.count}, ..., {self.tile[0]}, {self.tile[1]}] tile values, "
                             f"got {list(values.shape)}")
        weights = self.weights.to(values.device)
        weights = (weights if mask is None else weights * mask).expand(values.shape)
        lead = values.shape[1:-2]
        total = torch.zeros(*lead, self.nlat, self.nlon, dtype=torch.float64, device=values.device)
        weight_sum = torch.zeros_like(total)
        index = self._scatter_index(values.device)
        for out, contribution in ((total, values.double() * weights), (weight_sum, weights.double())):
            # index_put_ on the (lat, lon)-first view of ``out`` adds each tile point to its grid point
            out.movedim((-2, -1), (0, 1)).index_put_(index, contribution.movedim((-2, -1), (1, 2)), accumulate=True)
        blended = torch.where(weight_sum > 0, total / weight_sum.clamp_min(1e-300), torch.zeros_like(total))
        return blended, weight_sum

    def coverage(self) -> np.ndarray:
        """How many tiles cover each grid point ``[nlat, nlon]`` (D15: must be >= 1 everywhere)."""
        ones = torch.ones(self.count, *self.tile, dtype=torch.float64)
        count = torch.zeros(self.nlat, self.nlon, dtype=torch.float64)
        count.index_put_(self._scatter_index(count.device), ones, accumulate=True)
        return count.numpy().astype(np.int64)

    def _scatter_index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.count, *self.tile)
        return self.rows[:, :, None].expand(shape).to(device), self.cols[:, None, :].expand(shape).to(device)
