"""Nearest-neighbour weights (ESMF ``neareststod`` / ``nearestdtos``) by 3-D chord distance.

``nearest_s2d``: every active destination centre takes the value of the nearest active source
centre (weight 1; every destination is mapped). ``nearest_d2s``: every active source centre is
added to its nearest active destination centre (weight 1, contributions add; destinations that
receive nothing stay unmapped). Exact distance ties go to the smaller index, as in ESMF.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from atmorep_coupler.regrid.grids import Grid
from atmorep_coupler.regrid.weights import RegridWeights

#: Neighbours examined per query, so that exact ties can be broken by index.
_TIE_CANDIDATES = 4


def nearest_index(targets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index into ``candidates`` (unit vectors) of the one nearest to each target; ties -> smaller index."""
    k = min(_TIE_CANDIDATES, len(candidates))
    _, idx = cKDTree(candidates).query(targets, k=k)
    idx = idx.reshape(len(targets), k)
    d2 = ((candidates[idx] - targets[:, None, :]) ** 2).sum(axis=-1)
    # Lexicographic minimum of (distance, index): sort by index, then take the first minimal distance.
    order = np.argsort(idx, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    d2 = np.take_along_axis(d2, order, axis=1)
    return idx[np.arange(len(targets)), np.argmin(d2, axis=1)]


def nearest_s2d_weights(src: Grid, dst: Grid) -> RegridWeights:
    """Each active destination cell takes its nearest active source cell."""
    src_active = np.flatnonzero(src.mask.ravel())
    dst_active = np.flatnonzero(dst.mask.ravel())
    nearest = nearest_index(dst.center_xyz.reshape(-1, 3)[dst_active], src.center_xyz.reshape(-1, 3)[src_active])
    return _unit_weights(dst_active, src_active[nearest], src, dst, "nearest_s2d")


def nearest_d2s_weights(src: Grid, dst: Grid) -> RegridWeights:
    """Each active source cell is added to its nearest active destination cell."""
    src_active = np.flatnonzero(src.mask.ravel())
    dst_active = np.flatnonzero(dst.mask.ravel())
    nearest = nearest_index(src.center_xyz.reshape(-1, 3)[src_active], dst.center_xyz.reshape(-1, 3)[dst_active])
    return _unit_weights(dst_active[nearest], src_active, src, dst, "nearest_d2s")


def _unit_weights(row: np.ndarray, col: np.ndarray, src: Grid, dst: Grid, method: str) -> RegridWeights:
    return RegridWeights.from_triplets(
        row,
        col,
        np.ones(len(row)),
        src_shape=src.shape,
        dst_shape=dst.shape,
        method=method,
        area_a=src.area.ravel(),
        area_b=dst.area.ravel(),
    )
