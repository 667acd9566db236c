"""Bilinear weights by ESMF's 3-D method (cartesian line type), including its pole handling.

Source cell centres are the nodes. A destination point X lies in the quad of four neighbouring
nodes ``q0=(j,i), q1=(j,i+1), q2=(j+1,i+1), q3=(j+1,i)`` (i periodic on x-periodic grids) when the
ray from the sphere's centre through X meets the 3-D bilinear patch

    B(p, q) = (1-p)(1-q) q0 + p(1-q) q1 + pq q2 + (1-p)q q3 = t X,   0 <= p, q <= 1, t > 0;

the weights are ``(1-p)(1-q), p(1-q), pq, (1-p)q``. This is not bilinear interpolation in degrees
(which differs from ESMF by ~1e-3 per weight). For a global source, points poleward of the
outermost row use the triangles (row node i, row node i+1, pole) with barycentric weights of the
ray/plane intersection; the pole's value is the mean of the whole outer row, so its weight is
spread equally over the row's nodes (ESMF's pole method "all"). Quads or triangles with a masked
node are not used; destination points found in none stay unmapped.
"""

from __future__ import annotations

import numpy as np

from atmorep_coupler.regrid import sphere
from atmorep_coupler.regrid.grids import Grid, LatLonGrid
from atmorep_coupler.regrid.weights import RegridWeights

#: Parametric tolerance for "inside" a quad or triangle (points on shared edges belong to both).
INSIDE_TOL = 1e-10
NEWTON_ITERATIONS = 30
#: Candidate pairs tested per vectorised batch.
_CHUNK = 500_000


def bilinear_weights(src: Grid, dst: Grid) -> RegridWeights:
    """ESMF-compatible bilinear weights from ``src`` cell centres to ``dst`` cell centres."""
    nodes = src.center_xyz.reshape(-1, 3)
    active_src = src.mask.ravel()
    dst_active = np.flatnonzero(dst.mask.ravel())
    points = dst.center_xyz.reshape(-1, 3)[dst_active]

    quads = _quad_nodes(*src.shape, periodic=src.periodic)
    if isinstance(src, LatLonGrid):
        ia, ib = _latlon_quad_candidates(src, dst.center_lat.ravel()[dst_active], dst.center_lon.ravel()[dst_active])
    else:
        ia, ib = sphere.candidate_pairs(*sphere.bounding_caps(nodes[quads]), points, np.zeros(len(points)))
    usable = active_src[quads].all(axis=1)[ia]
    found, quad_of, pq = _locate_in_quads(nodes, quads, points, ia[usable], ib[usable])
    p, q = pq[:, 0], pq[:, 1]
    w = np.stack([(1 - p) * (1 - q), p * (1 - q), p * q, (1 - p) * q], axis=1)
    rows = [np.repeat(dst_active[found], 4)]
    cols = [quads[quad_of].ravel()]
    vals = [w.ravel()]

    if src.is_global and not found.all():
        missing = np.flatnonzero(~found)
        for row_index in (0, src.shape[0] - 1):
            r, c, v, hit = _pole_triangle_weights(src, row_index, points[missing])
            rows.append(dst_active[missing][r])
            cols.append(c)
            vals.append(v)
            missing = missing[~hit]

    return RegridWeights.from_triplets(
        np.concatenate(rows),
        np.concatenate(cols),
        np.concatenate(vals),
        src_shape=src.shape,
        dst_shape=dst.shape,
        method="bilinear",
        area_a=src.area.ravel(),
        area_b=dst.area.ravel(),
    )


def _quad_nodes(ny: int, nx: int, *, periodic: bool) -> np.ndarray:
    """Flat node indices ``(nquads, 4)`` of the quads ``(j,i), (j,i+1), (j+1,i+1), (j+1,i)``."""
    j, i = np.meshgrid(np.arange(ny - 1), np.arange(nx if periodic else nx - 1), indexing="ij")
    j, i = j.ravel(), i.ravel()
    i1 = (i + 1) % nx
    return np.stack([j * nx + i, j * nx + i1, (j + 1) * nx + i1, (j + 1) * nx + i], axis=1)


def _latlon_quad_candidates(src: LatLonGrid, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ``(quad, point)`` pairs for a lat-lon source, sorted by point then quad.

    The quad's meridian edges are exact, so the column follows from the longitude; its "parallel"
    edges are great circles that bulge poleward, so the rows on either side are candidates too.
    """
    ny, nx = src.shape
    n_cols = nx if src.periodic else nx - 1
    north_first = src.lat[0] > src.lat[-1]
    lat_sorted = src.lat[::-1] if north_first else src.lat
    k = np.clip(np.searchsorted(lat_sorted, lat) - 1, 0, ny - 2)  # quad between sorted rows k, k+1
    # Rows k-1, k, k+1 in ascending quad-index order (sorted row k is grid row ny - 2 - k north-first).
    rows = (ny - 2 - k)[:, None] + np.array([-1, 0, 1]) if north_first else k[:, None] + np.array([-1, 0, 1])
    lon_in_frame = src.lon[0] + np.mod(lon - src.lon[0], 360.0)
    col = np.searchsorted(src.lon, lon_in_frame, side="right") - 1  # nx - 1: the periodic wrap quad
    valid = (rows >= 0) & (rows <= ny - 2) & (col[:, None] < n_cols)
    quad = rows * n_cols + col[:, None]
    point = np.broadcast_to(np.arange(len(lat))[:, None], quad.shape)
    return quad[valid], point[valid]  # row-major: grouped by point, quads ascending


def _locate_in_quads(nodes: np.ndarray, quads: np.ndarray, points: np.ndarray, ia: np.ndarray, ib: np.ndarray):
    """For each point: found?, index of the (first) quad containing it, and its ``(p, q)``.

    ``ia``, ``ib``: candidate (quad, point) pairs sorted by point, then quad.
    """
    # The patch's edges are straight segments between nodes, so the ray meets the patch only where X
    # lies within the great-circle quad of the nodes: on the same side of all four edge planes.
    # This cheap test (in chunks, to bound memory) leaves Newton's method about one candidate per point.
    used, quad_of_pair = np.unique(ia, return_inverse=True)
    corners = nodes[quads[used]]  # (used quads, 4, 3)
    normals = sphere.cross(corners, np.roll(corners, -1, axis=1))
    tol = 1e-12
    maybe = np.zeros(len(ia), dtype=bool)
    for start in range(0, len(ia), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        side = sphere.dot(normals[quad_of_pair[chunk]], points[ib[chunk]][:, None, :])
        maybe[chunk] = (side >= -tol).all(axis=1) | (side <= tol).all(axis=1)
    ia, ib, corners = ia[maybe], ib[maybe], corners[quad_of_pair[maybe]]
    p, q, ok = _solve_patch(corners, points[ib])
    ia, ib, p, q = ia[ok], ib[ok], p[ok], q[ok]
    # candidate_pairs sorts by point then quad: the first hit per point is its lowest quad index.
    first = np.flatnonzero(np.r_[True, ib[1:] != ib[:-1]]) if len(ib) else np.zeros(0, dtype=np.int64)
    found = np.zeros(len(points), dtype=bool)
    found[ib[first]] = True
    return found, ia[first], np.clip(np.stack([p[first], q[first]], axis=1), 0.0, 1.0)


def _solve_patch(c: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton's method for ``B(p, q) = t x`` on batches of quads ``c (P, 4, 3)`` and points ``x (P, 3)``.

    ``B = a + p b + q e + p q d`` with ``a = q0, b = q1 - q0, e = q3 - q0, d = q0 - q1 + q2 - q3``;
    the Jacobian columns are ``b + q d``, ``e + p d`` and ``-x`` (solved by Cramer's rule).
    Returns ``p, q`` and whether the point lies inside the quad.
    """
    a = c[:, 0]
    b = c[:, 1] - c[:, 0]
    e = c[:, 3] - c[:, 0]
    d = c[:, 0] - c[:, 1] + c[:, 2] - c[:, 3]
    n = len(x)
    p = np.full(n, 0.5)
    q = np.full(n, 0.5)
    t = np.einsum("pi,pi->p", a + 0.5 * b + 0.5 * e + 0.25 * d, x)
    todo = np.arange(n)  # pairs still moving
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(NEWTON_ITERATIONS):
            pk, qk, xk, dk = p[todo, None], q[todo, None], x[todo], d[todo]
            residual = a[todo] + pk * b[todo] + qk * e[todo] + (pk * qk) * dk - t[todo, None] * xk
            jp = b[todo] + qk * dk
            jq = e[todo] + pk * dk
            det = _triple(jp, jq, -xk)
            dp = -_triple(residual, jq, -xk) / det
            dq = -_triple(jp, residual, -xk) / det
            dt = -_triple(jp, jq, residual) / det
            p[todo] += dp
            q[todo] += dq
            t[todo] += dt
            todo = todo[np.abs(dp) + np.abs(dq) > 1e-13]  # converged (quadratically: error ~ step^2); NaN drops out too
            if len(todo) == 0:
                break
        residual = a + p[:, None] * b + q[:, None] * e + (p * q)[:, None] * d - t[:, None] * x
        converged = np.linalg.norm(residual, axis=1) < 1e-10
        lo, hi = -INSIDE_TOL, 1.0 + INSIDE_TOL
        inside = converged & (p >= lo) & (p <= hi) & (q >= lo) & (q <= hi) & (t > 0)
    return p, q, inside


def _triple(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    return sphere.dot(u, sphere.cross(v, w))


def _pole_triangle_weights(src: Grid, row_index: int, points: np.ndarray):
    """Weights of points in the pole triangles beyond source row ``row_index`` (0 or ny-1).

    Returns ``(point_index, col, S, hit)`` where ``hit`` marks points found in a triangle.
    """
    ny, nx = src.shape
    ring = row_index * nx + np.arange(nx)
    ring_active = src.mask.ravel()[ring]
    ring_xyz = src.center_xyz.reshape(-1, 3)[ring]
    if not ring_active.any() or len(points) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(len(points), bool)
    pole = sphere.normalize(ring_xyz[ring_active].mean(axis=0))
    i0 = np.arange(nx)
    i1 = (i0 + 1) % nx
    usable = ring_active[i0] & ring_active[i1]
    i0, i1 = i0[usable], i1[usable]
    tri = np.stack([ring_xyz[i0], ring_xyz[i1], np.broadcast_to(pole, (len(i0), 3))], axis=1)
    ia, ib = sphere.candidate_pairs(*sphere.bounding_caps(tri), points, np.zeros(len(points)))
    # Solve l0 (v0 - P) + l1 (v1 - P) - t x = -P by Cramer's rule; l_pole = 1 - l0 - l1.
    u, v, x = tri[ia, 0] - pole, tri[ia, 1] - pole, points[ib]
    with np.errstate(divide="ignore", invalid="ignore"):
        det = _triple(u, v, -x)
        rhs = -np.broadcast_to(pole, u.shape)
        l0 = _triple(rhs, v, -x) / det
        l1 = _triple(u, rhs, -x) / det
        t = _triple(u, v, rhs) / det
    lp = 1.0 - l0 - l1
    ok = (l0 >= -INSIDE_TOL) & (l1 >= -INSIDE_TOL) & (lp >= -INSIDE_TOL) & (t > 0)
    ia, ib, l0, l1, lp = ia[ok], ib[ok], l0[ok], l1[ok], lp[ok]
    first = np.flatnonzero(np.r_[True, ib[1:] != ib[:-1]]) if len(ib) else np.zeros(0, dtype=np.int64)
    ia, ib, l0, l1, lp = ia[first], ib[first], l0[first], l1[first], lp[first]
    ring_cols = ring[ring_active]
    n_ring = len(ring_cols)
    point_index = np.concatenate([ib, ib, np.repeat(ib, n_ring)])
    cols = np.concatenate([ring[i0[ia]], ring[i1[ia]], np.tile(ring_cols, len(ib))])
    vals = np.concatenate([l0, l1, np.repeat(lp / n_ring, n_ring)])
    hit = np.zeros(len(points), dtype=bool)
    hit[ib] = True
    return point_index, cols, vals, hit
