"""Global tiling of a lat-lon grid by neighbourhoods, and a blend back without seams at tile or token edges.

The multiformer sees one neighbourhood (``ny x nx`` grid points) at a time; a global step runs it on
tiles that cover the globe and stitches their predictions. The reference code
laid tiles from the North Pole with one extra row flush with the South Pole and left the stitching to
external code -- and its ``global_forecast`` left a strip uncovered. Here:

- **Rows** never cross a pole (the model was trained on windows that stay inside the grid): the first
  tile row starts at the northernmost row, the last one ends at the southernmost, and the rows in
  between are spread evenly with a stride of at most ``ny - overlap_rows``.
- **Columns** wrap across the dateline (0°/360°): ``ceil(nlon / stride)`` tiles spread evenly round
  the circle, the last overlapping the first.
- Consecutive starts are at most one stride apart and a stride is at most the tile size, so every
  grid point lies in at least one tile (:meth:`GlobalTiling.coverage` counts them; tested).
- **Staggered second pass** (``stagger``, the component's default): a second set of tiles shifted by
  about half a tile *plus half a token* on both axes (rows clamped inside the grid, keeping the shift
  modulo the token). The network predicts each token from one embedding, so its predictions jump at
  token edges, and every tile of one pass has its token edges (and its own edges) on the same grid
  lines; the staggered pass has its token interiors there instead.
- **Blending**: a point's value is ``Σ_tiles w·x / Σ_tiles w``. A tile's weight is the product, per
  axis, of a linear ramp that falls to about zero at the tile's edges (over ``token`` points; no ramp
  at the grid's northern and southern edges, where no other tile can take over) and a taper inside
  each token, ``sin²(π (j + ½) / t)``, small at token edges. So where one tile (or token) ends, the
  tiles whose interiors lie there carry the value: tile offsets and token steps fade instead of
  jumping. Identical tile values reproduce the field exactly (to round-off; float64 accumulation).

How much of the seams this removes is measured, not assumed: :func:`seam_ratios` compares the jumps
across token and tile edges with those between interior neighbours (the truth's ratio is about 1);
``tests/component/test_atmorep.py::test_token_and_tile_seams_stay_near_the_truths`` bounds it.

Everything is vectorised with index arrays: :meth:`gather` cuts all tiles at once, :meth:`blend`
scatter-adds them back with ``index_put_(accumulate=True)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from atmorep_coupler.errors import ConfigError

__all__ = ["GlobalTiling", "seam_ratios", "tile_starts", "token_taper", "edge_ramp"]


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


def staggered_starts(starts: np.ndarray, n: int, size: int, token: int, *, periodic: bool) -> np.ndarray:
    """The second pass: ``starts`` shifted by half a tile rounded to whole tokens plus half a token.
    On a bounded axis, shifted tiles that leave the grid are dropped and the first and last start
    inside the grid with the same offset modulo ``token`` are added, so the pass reaches both edges."""
    shift = (size // 2) // token * token + token // 2
    if shift == 0 or size >= n:
        return np.empty(0, dtype=np.int64)
    moved = np.asarray(starts) + shift
    if periodic:
        return np.unique(moved % n)
    offset = shift % token
    first = offset
    last = offset + (n - size - offset) // token * token
    inside = moved[moved <= n - size]
    return np.unique(np.concatenate([[first], inside, [last]]).astype(np.int64))


def token_taper(size: int, token: int) -> np.ndarray:
    """``sin²(π (j + ½) / token)`` for the position ``j`` of each of ``size`` points in its token:
    positive, small at token edges (1 everywhere for one-point tokens)."""
    if token <= 1:
        return np.ones(size)
    j = np.arange(size) % token
    return np.sin(np.pi * (j + 0.5) / token) ** 2


def edge_ramp(size: int, length: int, *, start: bool, end: bool) -> np.ndarray:
    """Weights rising linearly from the tile's first point over ``length`` points (when ``start``)
    and falling to its last (when ``end``): ``min(1, (d + ½) / length)`` with ``d`` the distance to a
    ramped edge; 1 where no edge is ramped."""
    i = np.arange(size, dtype=np.float64)
    distance = np.full(size, np.inf)
    if start:
        distance = np.minimum(distance, i)
    if end:
        distance = np.minimum(distance, size - 1 - i)
    return np.minimum(1.0, (distance + 0.5) / max(length, 1))


class GlobalTiling:
    """Tiles of ``tile = (ny, nx)`` points over a global ``(nlat, nlon)`` grid (north-first rows,
    longitude periodic): a first pass overlapping by at least ``overlap = (rows, columns)`` points
    and, with ``stagger``, a second pass offset by about half a tile plus half a ``token = (y, x)``.

    ``origins [n_tiles, 2]`` (first row, first column), ``rows [n_tiles, ny]`` and ``cols [n_tiles, nx]``
    (grid indices, columns wrapped), ``weights [n_tiles, ny, nx]`` (the blending weights).
    """

    def __init__(self, nlat: int, nlon: int, tile: tuple[int, int], overlap: tuple[int, int],
                 token: tuple[int, int] = (1, 1), *, stagger: bool = False) -> None:
        (ny, nx), (oy, ox), (ty, tx) = tile, overlap, token
        if not (0 < ny <= nlat and 0 < nx <= nlon):
            raise ConfigError(f"tiling: a neighbourhood of {ny}x{nx} points does not fit the {nlat}x{nlon} grid")
        if not (0 <= oy < ny and 0 <= ox < nx):
            raise ConfigError(
                f"tile_overlap: {[oy, ox]} points must be >= 0 and smaller than the neighbourhood {[ny, nx]}"
            )
        if not (ty >= 1 and tx >= 1 and ny % ty == 0 and nx % tx == 0):
            raise ConfigError(f"tiling: tokens of {[ty, tx]} points do not divide the neighbourhood {[ny, nx]}")
        self.nlat, self.nlon, self.tile, self.overlap, self.token = nlat, nlon, (ny, nx), (oy, ox), (ty, tx)
        row0 = tile_starts(nlat, ny, ny - oy, periodic=False)
        col0 = tile_starts(nlon, nx, nx - ox, periodic=True)
        passes = [(row0, col0)]
        if stagger:
            passes.append((staggered_starts(row0, nlat, ny, ty, periodic=False),
                           staggered_starts(col0, nlon, nx, tx, periodic=True)))
        self.origins = np.concatenate([np.stack(np.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2)
                                       for r, c in passes if r.size and c.size])
        self.rows = torch.from_numpy(self.origins[:, :1] + np.arange(ny))
        self.cols = torch.from_numpy((self.origins[:, 1:] + np.arange(nx)) % nlon)
        self.weights = torch.from_numpy(self._weights())

    def _weights(self) -> np.ndarray:
        """Per tile: (row ramp x row token taper) outer (column ramp x column token taper)."""
        (ny, nx), (ty, tx) = self.tile, self.token
        first = self.origins[:, 0] == 0
        last = self.origins[:, 0] + ny == self.nlat
        rows = np.stack([edge_ramp(ny, ty, start=not f, end=not la) for f, la in zip(first, last)])
        rows = rows * token_taper(ny, ty)
        wraps = nx < self.nlon  # a tile spanning every longitude has no column edge to hide
        cols = edge_ramp(nx, tx, start=wraps, end=wraps) * token_taper(nx, tx)
        return rows[:, :, None] * cols[None, None, :]

    def refined(self, r: int) -> "GlobalTiling":
        """The same tiles on a grid ``r`` times finer in latitude and longitude (a field with
        ``grid_refinement: r``): origins, tile, token and grid scaled by ``r``, blending weights recomputed
        on the fine points. Tile ``k`` of both covers the same area (the fine grid's rows nest in the
        model's; see :func:`atmorep_coupler.data.paired.fine_origins` for the columns)."""
        if r == 1:
            return self
        fine = object.__new__(GlobalTiling)
        fine.nlat, fine.nlon = r * self.nlat, r * self.nlon
        fine.tile = (r * self.tile[0], r * self.tile[1])
        fine.overlap = (r * self.overlap[0], r * self.overlap[1])
        fine.token = (r * self.token[0], r * self.token[1])
        fine.origins = r * self.origins
        fine.rows = torch.from_numpy(fine.origins[:, :1] + np.arange(fine.tile[0]))
        fine.cols = torch.from_numpy((fine.origins[:, 1:] + np.arange(fine.tile[1])) % fine.nlon)
        fine.weights = torch.from_numpy(fine._weights())
        return fine

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
        lead = values.shape[1:-2]
        weights = self.weights.to(values.device).reshape(self.count, *([1] * len(lead)), *self.tile)
        weights = (weights if mask is None else weights * mask).expand(values.shape)
        total = torch.zeros(*lead, self.nlat, self.nlon, dtype=torch.float64, device=values.device)
        weight_sum = torch.zeros_like(total)
        index = self._scatter_index(values.device)
        for out, contribution in ((total, values.double() * weights), (weight_sum, weights.double())):
            # index_put_ on the (lat, lon)-first view of ``out`` adds each tile point to its grid point
            out.movedim((-2, -1), (0, 1)).index_put_(index, contribution.movedim((-2, -1), (1, 2)), accumulate=True)
        blended = torch.where(weight_sum > 0, total / weight_sum.clamp_min(1e-300), torch.zeros_like(total))
        return blended, weight_sum

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid lines where tiles start or end (``(rows, columns)``; a line ``i`` lies before index ``i``),
        without the grid's own northern and southern edges, for :func:`seam_ratios`."""
        (ny, nx) = self.tile
        rows = np.unique(np.concatenate([self.origins[:, 0], self.origins[:, 0] + ny]))
        cols = np.unique(np.concatenate([self.origins[:, 1], self.origins[:, 1] + nx]) % self.nlon)
        return rows[(rows > 0) & (rows < self.nlat)], cols

    def coverage(self) -> np.ndarray:
        """How many tiles cover each grid point ``[nlat, nlon]`` (must be >= 1 everywhere)."""
        ones = torch.ones(self.count, *self.tile, dtype=torch.float64)
        count = torch.zeros(self.nlat, self.nlon, dtype=torch.float64)
        count.index_put_(self._scatter_index(count.device), ones, accumulate=True)
        return count.numpy().astype(np.int64)

    def _scatter_index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.count, *self.tile)
        return self.rows[:, :, None].expand(shape).to(device), self.cols[:, None, :].expand(shape).to(device)


def seam_ratios(field: np.ndarray, token: tuple[int, int], tile_edges: tuple[np.ndarray, np.ndarray] | None = None
                ) -> dict[str, float]:
    """Jumps across boundaries relative to jumps between interior neighbours, for ``field [..., nlat, nlon]``.

    Neighbour pairs are taken along both axes (columns periodic); a pair straddles the line before
    index ``i`` at offset ``i mod t`` in its token of ``t`` points. Returned, each as the mean
    absolute difference across those lines divided by the mean over *interior* pairs (offsets neither
    ``0`` nor ``t // 2``, or every pair off the token lines when tokens are shorter than 4 points):

    - ``token``: the token lines (offset 0), where every tile of the first pass has its token edges;
    - ``staggered``: the lines at offset ``t // 2``, where the staggered pass has its token edges;
    - ``tile``: the lines where any tile starts or ends (``tile_edges = (row lines, column lines)``).

    A smooth field gives about 1 for each; a blocky prediction more.
    """
    field = np.asarray(field, dtype=np.float64)
    nlat, nlon = field.shape[-2:]
    pairs = [np.abs(np.diff(field, axis=-2)), np.abs(field - np.roll(field, 1, axis=-1))]  # rows 1.., columns 0..
    lines = [np.arange(1, nlat), np.arange(nlon)]

    def mean_over(select) -> float:
        parts = [np.moveaxis(jump, axis, -1)[..., select(axis, line)]
                 for axis, (jump, line) in enumerate(zip(pairs, lines), start=-2)]
        values = np.concatenate([p.ravel() for p in parts])
        return float(values.mean()) if values.size else float("nan")

    def offset(axis: int, line: np.ndarray) -> np.ndarray:
        return line % token[axis + 2]

    def interior(axis: int, line: np.ndarray) -> np.ndarray:
        t = token[axis + 2]
        off = offset(axis, line)
        return (off != 0) & (off != t // 2) if t >= 4 else off != 0

    reference = mean_over(interior)
    out = {"token": mean_over(lambda a, line: offset(a, line) == 0) / reference,
           "staggered": mean_over(lambda a, line: (offset(a, line) == token[a + 2] // 2) & (token[a + 2] >= 2))
           / reference}
    if tile_edges is not None:
        edges = [np.unique(np.asarray(tile_edges[0])), np.unique(np.asarray(tile_edges[1]) % nlon)]
        out["tile"] = mean_over(lambda a, line: np.isin(line, edges[a + 2])) / reference
    return out
