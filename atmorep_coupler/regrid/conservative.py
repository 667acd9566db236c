"""First-order conservative weights: great-circle polygon overlaps (ESMF) or latitude bands (CDO).

Great-circle cells (default) are spherical polygons whose edges are great-circle arcs between their
corners (also the "latitude" edges of lat-lon cells, which therefore bulge poleward of the
parallel). The overlap of a source and a destination cell is found by clipping the source polygon
against the great-circle planes of the destination's edges (Sutherland-Hodgman in 3-D; both cells
are convex) and taking the spherical excess of the result. Candidate pairs come from
latitude/longitude interval searches between lat-lon grids, and from bounding caps in a KD-tree
otherwise; all pairs are clipped at once as padded arrays (in chunks), with no Python loop over
cells, and between lat-lon grids with uniform longitudes only one sector of the globe is clipped.

Latitude-band cells (``edges="parallels"``, lat-lon grids only) are bounded by parallels and
meridians, as in CDO, SCRIP and OASIS: their overlaps are exact products of a longitude and a
``sin(lat)`` interval overlap.

Weights (ESMF conventions): ``S_ij = A_ij / area_b_i`` (DSTAREA, rows sum to ``frac_b``) or
``S_ij = A_ij / sum_j A_ij`` (FRACAREA, rows sum to 1), with ``frac_b_i = sum_j A_ij / area_b_i`` and
``frac_a_j = sum_i A_ij / area_a_j`` over active (unmasked) cells.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import sphere
from atmorep_coupler.regrid.grids import Grid, LatLonGrid
from atmorep_coupler.regrid.weights import RegridWeights

#: Overlaps smaller than this fraction of the smaller cell are round-off slivers (cells that only
#: share an edge or a corner); ESMF omits them too.
SLIVER = 1e-12
#: Pairs clipped per vectorised batch (bounds memory at ~100 MB).
CHUNK = 200_000


def edge_normals(corners: np.ndarray) -> np.ndarray:
    """Unit normals ``(..., 4, 3)`` of the great-circle planes through each edge ``c_k -> c_{k+1}``.

    For counter-clockwise cells the interior lies on the positive side of every plane. Degenerate
    edges (repeated corners at a pole) get a zero normal, so they clip nothing.
    """
    normals = sphere.cross(corners, np.roll(corners, -1, axis=-2))
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.where(norm > sphere.DEGENERATE_EDGE, normals / np.where(norm > 0, norm, 1.0), 0.0)


def clip_polygons(poly: np.ndarray, count: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip convex spherical polygons by convex cells, pairwise (Sutherland-Hodgman on the sphere).

    ``poly``: ``(P, M, 3)`` vertices (padded), ``count``: ``(P,)`` valid vertices; ``normals``:
    ``(P, K, 3)`` edge-plane normals of the clipping cells (:func:`edge_normals`); a vertex is inside
    a plane when its dot product with the normal is >= 0. Returns ``(P, >= M, 3)`` and the counts.
    Each plane rewrites only the polygons with a vertex outside it: a source cell that straddles
    one edge of the destination cell is clipped once, not four times.
    """
    poly, count = poly.copy(), count.copy()
    for k in range(normals.shape[1]):
        normal = normals[:, k]
        dist = sphere.dot(poly, normal[:, None, :])
        valid = np.arange(poly.shape[1])[None, :] < count[:, None]
        cut = np.flatnonzero(((dist < 0) & valid).any(axis=1))
        if len(cut) == 0:
            continue
        part, part_count = _clip_by_plane(poly[cut], count[cut], dist[cut])
        width = part.shape[1]
        if width > poly.shape[1]:
            poly = np.concatenate([poly, np.zeros((len(poly), width - poly.shape[1], 3))], axis=1)
        poly[cut, :width] = part
        poly[cut, width:] = 0.0
        count[cut] = part_count
    return poly, count


def _clip_by_plane(poly: np.ndarray, count: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Sutherland-Hodgman pass: keep the part of each polygon with ``dist >= 0``.

    ``dist``: ``(P, M)`` signed distances of the vertices from the clipping plane.
    """
    n_poly, m, _ = poly.shape
    slot = np.arange(m)
    valid = slot[None, :] < count[:, None]
    inside = dist >= 0
    nxt = np.where(slot[None, :] + 1 < count[:, None], slot[None, :] + 1, 0)
    dist_next = np.take_along_axis(dist, nxt, axis=1)
    keep = inside & valid
    cross = valid & (inside != (dist_next >= 0))
    n_emit = keep.astype(np.int64) + cross
    offset = np.cumsum(n_emit, axis=1) - n_emit
    # A convex polygon gains at most one vertex per plane, but vertices lying on the plane (cells that
    # share an edge) have round-off distances of either sign and can add a few more, all on the plane
    # and of no area: size the buffer from what is actually emitted.
    out = np.zeros((n_poly, max(m + 1, int(n_emit.sum(axis=1).max(initial=0))), 3))
    p, s = np.nonzero(keep)
    out[p, offset[p, s]] = poly[p, s]
    p, s = np.nonzero(cross)
    # The edge v -> w meets the plane at (d_v w - d_w v) / (d_v - d_w), a positive combination.
    v, w = poly[p, s], poly[p, nxt[p, s]]
    dv, dw = dist[p, s], dist_next[p, s]
    point = (dv[:, None] * w - dw[:, None] * v) / (dv - dw)[:, None]
    out[p, offset[p, s] + keep[p, s]] = sphere.normalize(point)
    return out, n_emit.sum(axis=1)


def overlap_areas(src: Grid, dst: Grid, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, col, area)`` of every overlap between active destination and source cells (flat indices).

    Between lat-lon grids with uniform longitudes around the globe, a rotation about the polar axis
    by ``360 / gcd(nx_a, nx_b)`` degrees maps both grids onto themselves: only the destination
    columns of one such sector are clipped, and their overlaps are rotated to the other sectors
    (ERA5 0.25 deg -> 1 deg: one column of 360).
    """
    symmetry = _longitude_symmetry(src, dst)
    if symmetry is None:
        ia, ib = candidate_cells(src, dst)
        return _clipped_overlaps(src, dst, ia, ib, progress)
    shift_a, shift_b, sectors = symmetry
    ia, ib = _rectilinear_candidates(src, dst, n_cols=shift_b)
    row, col, area = _clipped_overlaps(src, dst, ia, ib, progress)
    nx_a = src.shape[1]
    turn = np.arange(sectors)[:, None]
    col = (col // nx_a * nx_a + (col % nx_a + turn * shift_a) % nx_a).ravel()
    row = (row + turn * shift_b).ravel()
    area = np.broadcast_to(area, (sectors, len(area))).ravel()
    keep = src.mask.ravel()[col] & dst.mask.ravel()[row]
    return row[keep], col[keep], area[keep]


def _clipped_overlaps(src: Grid, dst: Grid, ia: np.ndarray, ib: np.ndarray, progress: bool):
    """``(row, col, area)`` of the candidate pairs ``(ia, ib)`` that overlap by more than a sliver."""
    area_a, area_b = src.area.ravel(), dst.area.ravel()
    rows, cols, areas = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    starts = range(0, len(ia), CHUNK)
    for start in tqdm(starts, desc="conservative overlaps", disable=not progress or len(starts) < 2):
        a, b = ia[start : start + CHUNK], ib[start : start + CHUNK]
        area = _pair_overlaps(_corners(src, a), area_a[a], _corners(dst, b))
        keep = area > SLIVER * np.minimum(area_a[a], area_b[b])
        rows.append(b[keep])
        cols.append(a[keep])
        areas.append(area[keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(areas)


def _corners(grid: Grid, cells: np.ndarray) -> np.ndarray:
    """Corner unit vectors ``(len(cells), 4, 3)`` of some cells (flat indices).

    For lat-lon grids they are computed for these cells only: the symmetric case needs a sliver of
    the grid, and a 0.25-degree grid's full corner array would take 100 MB.
    """
    if isinstance(grid, LatLonGrid):
        flat_lon, flat_lat = grid.corner_lon.reshape(-1, 4), grid.corner_lat.reshape(-1, 4)
        return sphere.lonlat_to_xyz(flat_lon[cells], flat_lat[cells])
    return grid.corner_xyz.reshape(-1, 4, 3)[cells]


def _longitude_symmetry(src: Grid, dst: Grid) -> tuple[int, int, int] | None:
    """``(shift_a, shift_b, sectors)`` when rotating by ``360 / sectors`` degrees maps both grids onto
    themselves, moving source columns by ``shift_a`` and destination columns by ``shift_b``; else None.

    Holds for lat-lon grids whose longitude bounds are uniform and span 360 degrees, with
    ``sectors = gcd(nx_a, nx_b) > 1``. Masks break the symmetry but not the geometry: they are
    applied after the rotation.
    """
    if not (isinstance(src, LatLonGrid) and isinstance(dst, LatLonGrid)):
        return None
    if not (_uniform_around_the_globe(src.lon_bounds) and _uniform_around_the_globe(dst.lon_bounds)):
        return None
    nx_a, nx_b = src.shape[1], dst.shape[1]
    sectors = math.gcd(nx_a, nx_b)
    return (nx_a // sectors, nx_b // sectors, sectors) if sectors > 1 else None


def _uniform_around_the_globe(lon_bounds: np.ndarray) -> bool:
    """True when the bounds are ``w0 + k * 360 / n`` (to 1e-12 degrees), west to east."""
    n = len(lon_bounds)
    edges = lon_bounds[0, 0] + np.arange(n + 1) * (360.0 / n)
    return bool(
        np.abs(lon_bounds[:, 0] - edges[:-1]).max() < 1e-12 and np.abs(lon_bounds[:, 1] - edges[1:]).max() < 1e-12
    )


def candidate_cells(src: Grid, dst: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(src, dst)`` of active cell pairs that may overlap (a superset of the overlaps)."""
    if isinstance(src, LatLonGrid) and isinstance(dst, LatLonGrid):
        ia, ib = _rectilinear_candidates(src, dst)
    else:
        src_caps = sphere.bounding_caps(src.corner_xyz.reshape(-1, 4, 3))
        dst_caps = sphere.bounding_caps(dst.corner_xyz.reshape(-1, 4, 3))
        ia, ib = sphere.candidate_pairs(*src_caps, *dst_caps)
    keep = src.mask.ravel()[ia] & dst.mask.ravel()[ib]
    return ia[keep], ib[keep]


def _rectilinear_candidates(
    src: LatLonGrid, dst: LatLonGrid, *, n_cols: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of lat-lon cells whose latitude and longitude ranges overlap (masks ignored).

    A cell with great-circle edges lies within its longitude interval and within its latitude
    interval widened by the poleward bulge of its "parallel" edges, so pairs outside both cannot
    overlap. Source rows and columns are matched per destination row and column, and combined.
    ``n_cols``: only the destination cells of the first ``n_cols`` columns.
    """
    nx_b = dst.shape[1]
    n_cols = nx_b if n_cols is None else n_cols
    src_lo, src_hi = _latitude_extent(src)
    dst_lo, dst_hi = _latitude_extent(dst)
    order = np.argsort(src_lo)
    start = np.searchsorted(src_hi[order], dst_lo - _TOL, side="right")
    end = np.searchsorted(src_lo[order], dst_hi + _TOL, side="left")
    row_owner, row_pos = _ranges(start, end)
    row_src = order[row_pos]

    west, east = src.lon_bounds[:, 0], src.lon_bounds[:, 1]
    owners, cols = [], []
    for shift in (-360.0, 0.0, 360.0):
        start = np.searchsorted(east + shift, dst.lon_bounds[:n_cols, 0] - _TOL, side="right")
        end = np.searchsorted(west + shift, dst.lon_bounds[:n_cols, 1] + _TOL, side="left")
        owner, col = _ranges(start, end)
        owners.append(owner)
        cols.append(col)
    col_pairs = np.unique(np.stack([np.concatenate(owners), np.concatenate(cols)], axis=1), axis=0)
    col_owner, col_src = col_pairs[:, 0], col_pairs[:, 1]

    n_rows = np.bincount(row_owner, minlength=dst.shape[0])
    per_col = np.bincount(col_owner, minlength=n_cols)
    row_first = np.cumsum(n_rows) - n_rows
    col_first = np.cumsum(per_col) - per_col
    s, c = np.divmod(np.arange(dst.shape[0] * n_cols), n_cols)
    cell, k = _ranges(np.zeros(len(s), np.int64), n_rows[s] * per_col[c])
    s, c = s[cell], c[cell]
    i_row, i_col = np.divmod(k, per_col[c])
    ia = row_src[row_first[s] + i_row] * src.shape[1] + col_src[col_first[c] + i_col]
    return ia, s * nx_b + c


#: Tolerance (degrees) when matching coordinate intervals; touching cells are included.
_TOL = 1e-9


def _latitude_extent(grid: LatLonGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the latitude range of its cells including the bulge of great-circle "parallel" edges.

    The arc between two points at latitude ``lat`` that are ``dlon`` apart peaks at
    ``atan(tan(lat) / cos(dlon / 2))`` (poleward).
    """
    south = grid.lat_bounds.min(axis=1)
    north = grid.lat_bounds.max(axis=1)
    half = np.deg2rad(np.max(grid.lon_bounds[:, 1] - grid.lon_bounds[:, 0])) / 2
    if half >= np.pi / 2:
        return np.full_like(south, -90.0), np.full_like(north, 90.0)

    def apex(lat):
        return np.rad2deg(np.arctan(np.tan(np.deg2rad(lat)) / np.cos(half)))

    return np.minimum(south, apex(south)), np.maximum(north, apex(north))


def _ranges(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the integer ranges ``[start_i, end_i)``: ``(owner i, value)`` for every element."""
    length = np.maximum(np.asarray(end) - np.asarray(start), 0)
    owner = np.repeat(np.arange(len(length)), length)
    first = np.cumsum(length) - length
    value = np.arange(length.sum()) - np.repeat(first, length) + np.repeat(start, length)
    return owner, value


def _pair_overlaps(src_poly: np.ndarray, src_area: np.ndarray, dst_poly: np.ndarray) -> np.ndarray:
    """Overlap areas of source and destination cells, pairwise ``(P, 4, 3)``.

    Pairs with every source corner inside all destination edge planes overlap by the whole source
    cell; pairs with all source corners outside one plane do not overlap; only the rest are clipped.
    """
    normals = edge_normals(dst_poly)
    dist = sphere.dot(src_poly[:, None, :, :], normals[:, :, None, :])  # (pair, plane, vertex)
    contained = (dist >= 0).all(axis=(1, 2))
    separated = (dist < 0).all(axis=2).any(axis=1)
    area = np.where(contained, src_area, 0.0)
    clip = np.flatnonzero(~contained & ~separated)
    poly, count = clip_polygons(src_poly[clip], np.full(len(clip), 4), normals[clip])
    area[clip] = sphere.polygon_area(poly, count)
    return area


#: How cell corners are joined: by great circles (ESMF, xESMF) or, for lat-lon cells, along the
#: parallels (CDO, SCRIP, YAC's latitude circles: exact latitude bands).
EDGES = ("great_circle", "parallels")


def band_overlaps(src: Grid, dst: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, col, area)`` of the exact overlaps of cells bounded by parallels and meridians.

    Such cells overlap in a rectangle in (longitude, sin latitude), so every overlap is the product
    of a longitude-interval overlap (radians) and a ``sin(lat)`` interval overlap: the weights are the
    Kronecker product of one matrix per axis, with no polygon clipping at all.
    """
    for side, grid in (("source", src), ("destination", dst)):
        if not isinstance(grid, LatLonGrid):
            raise RegridError(
                f"edges='parallels' needs cells bounded by parallels and meridians (LatLonGrid, GaussianGrid); "
                f"the {side} grid is a {type(grid).__name__}: use edges='great_circle'"
            )
    lat = _interval_overlaps(src.lat_bounds, dst.lat_bounds, lambda d: np.sin(np.deg2rad(d)), shifts=(0.0,))
    lon = _interval_overlaps(src.lon_bounds, dst.lon_bounds, np.deg2rad, shifts=(-360.0, 0.0, 360.0))
    # dst (i, k) x src (j, l) -> lat[i, j] * lon[k, l]: flat indices i * nx + k, the Kronecker order.
    overlap = sp.kron(lat, lon, format="coo")
    row, col, area = overlap.row.astype(np.int64), overlap.col.astype(np.int64), overlap.data
    keep = src.mask.ravel()[col] & dst.mask.ravel()[row]
    keep &= area > SLIVER * np.minimum(src.band_area.ravel()[col], dst.band_area.ravel()[row])
    return row[keep], col[keep], area[keep]


def _interval_overlaps(src_bounds: np.ndarray, dst_bounds: np.ndarray, measure, *, shifts) -> sp.csr_matrix:
    """Sparse ``(n_dst, n_src)`` matrix of ``measure(hi) - measure(lo)`` over overlapping intervals.

    Bounds ``(n, 2)`` in degrees, in either order; the source intervals are also tried shifted by
    each of ``shifts`` (360 degrees for periodic longitudes). Intervals of one grid do not overlap
    each other, so after sorting both ends are monotonic and two binary searches find the candidates.
    """
    lo_a, hi_a = src_bounds.min(axis=1), src_bounds.max(axis=1)
    lo_b, hi_b = dst_bounds.min(axis=1), dst_bounds.max(axis=1)
    order = np.argsort(lo_a)
    rows, cols, values = [], [], []
    for shift in shifts:
        start = np.searchsorted(hi_a[order] + shift, lo_b, side="right")
        end = np.searchsorted(lo_a[order] + shift, hi_b, side="left")
        row, pos = _ranges(start, end)
        col = order[pos]
        lo = np.maximum(lo_a[col] + shift, lo_b[row])
        hi = np.minimum(hi_a[col] + shift, hi_b[row])
        value = measure(hi) - measure(lo)
        keep = hi > lo
        rows.append(row[keep])
        cols.append(col[keep])
        values.append(value[keep])
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(len(lo_b), len(lo_a))
    )


def conservative_weights(
    src: Grid,
    dst: Grid,
    *,
    normalization: str = "dstarea",
    edges: str = "great_circle",
    min_fraction: float = 0.0,
    progress: bool = False,
) -> RegridWeights:
    """First-order conservative weights with ESMF's DSTAREA (``"dstarea"``) or FRACAREA (``"fracarea"``) norm.

    ``edges``: ``"great_circle"`` (ESMF's cells) or ``"parallels"`` (exact latitude bands, as CDO and
    SCRIP; lat-lon grids only); areas and fractions are those of the chosen cells. ``min_fraction``:
    destination cells whose covered fraction ``frac_b`` is below it stay unmapped (CDO's
    ``REMAP_AREA_MIN``); their overlaps are dropped, so ``frac_a``/``frac_b`` describe what is mapped.
    """
    if normalization not in ("dstarea", "fracarea"):
        raise RegridError(f"normalization must be 'dstarea' or 'fracarea', got {normalization!r}")
    if not 0.0 <= min_fraction <= 1.0:
        raise RegridError(f"min_fraction must lie in [0, 1] (a fraction of the destination cell), got {min_fraction!r}")
    if edges == "great_circle":
        row, col, overlap = overlap_areas(src, dst, progress=progress)
        area_a, area_b = src.area.ravel(), dst.area.ravel()
    elif edges == "parallels":
        row, col, overlap = band_overlaps(src, dst)
        area_a, area_b = src.band_area.ravel(), dst.band_area.ravel()
    else:
        raise RegridError(f"edges must be one of {list(EDGES)}, got {edges!r}")
    covered = np.bincount(row, weights=overlap, minlength=dst.size)
    if min_fraction > 0:
        keep = covered[row] >= min_fraction * area_b[row]
        row, col, overlap = row[keep], col[keep], overlap[keep]
        covered = np.bincount(row, weights=overlap, minlength=dst.size)
    frac_b = _ratio(covered, area_b)
    frac_a = _ratio(np.bincount(col, weights=overlap, minlength=src.size), area_a)
    weights = overlap / (area_b[row] if normalization == "dstarea" else covered[row])
    return RegridWeights.from_triplets(
        row,
        col,
        weights,
        src_shape=src.shape,
        dst_shape=dst.shape,
        method="conservative" if normalization == "dstarea" else "conservative_normed",
        frac_a=frac_a,
        frac_b=frac_b,
        area_a=area_a,
        area_b=area_b,
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (degenerate cells of zero area)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
