"""Spherical geometry on the unit sphere, vectorised over arrays of points and polygons.

Everything the regridding methods share lives here: degree <-> Cartesian conversion, polygon
orientation and area (spherical excess), the rotated-pole transform, local east/north unit
vectors, and bounding caps for neighbour searches. Polygons are arrays ``(..., nv, 3)`` of unit
vectors with great-circle edges, counter-clockwise seen from outside the sphere.
"""

from __future__ import annotations

import numpy as np

#: Relative size below which a great-circle edge counts as degenerate (e.g. two corners at a pole).
DEGENERATE_EDGE = 1e-12


def lonlat_to_xyz(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    """Unit vectors ``(..., 3)`` for longitudes/latitudes in degrees (arrays that broadcast together).

    Points at latitude exactly +-90 are snapped to (0, 0, +-1): cos(90 deg) is 6e-17 in floating
    point, which would turn the degenerate pole edge of a polar cell into a spurious tiny edge.
    """
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    # Trigonometry on the inputs as given (they may broadcast, e.g. rows x columns), then broadcast.
    cos_lat = np.where(np.abs(np.asarray(lat_deg)) == 90.0, 0.0, np.cos(lat))
    x, y = cos_lat * np.cos(lon), cos_lat * np.sin(lon)
    return np.stack([x, y, np.broadcast_to(np.sin(lat), x.shape)], axis=-1)


def xyz_to_lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude in [-180, 180) and latitude in degrees of (not necessarily unit) vectors."""
    x, y, z = np.moveaxis(np.asarray(xyz, dtype=np.float64), -1, 0)
    lon = np.rad2deg(np.arctan2(y, x))
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (``np.cross`` without its axis shuffling and copies)."""
    u0, u1, u2 = u[..., 0], u[..., 1], u[..., 2]
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0], axis=-1)


def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dot product over the last axis."""
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]


def normalize(v: np.ndarray) -> np.ndarray:
    """Scale vectors ``(..., 3)`` to unit length (zero vectors stay zero)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def triangle_excess(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed area (spherical excess) of great-circle triangles ``a, b, c`` (``(..., 3)`` unit vectors).

    Eriksson (1990) / Van Oosterom & Strackee (1983): ``tan(E/2) = a.(b x c) / (1 + a.b + b.c + c.a)``.
    The triple product is evaluated as ``a.((b - a) x (c - a))`` (equal in exact arithmetic) so that
    small triangles keep their relative precision instead of losing it to cancellation. Positive for
    counter-clockwise triangles seen from outside the sphere.
    """
    triple = dot(a, cross(b - a, c - a))
    denom = 1.0 + dot(a, b) + dot(b, c) + dot(c, a)
    return 2.0 * np.arctan2(triple, denom)


def polygon_area(vertices: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
    """Signed areas of spherical polygons ``(..., nv, 3)`` with great-circle edges (steradians).

    Fan triangulation from vertex 0; repeated vertices (degenerate pole edges) add zero-area
    triangles. ``count`` (shape ``...``) gives the number of valid leading vertices of padded
    polygons; slots beyond it are ignored.
    """
    nv = vertices.shape[-2]
    a = vertices[..., :1, :]
    b = vertices[..., 1:-1, :]
    c = vertices[..., 2:, :]
    tri = triangle_excess(a, b, c)  # (..., nv - 2)
    if count is not None:
        k = np.arange(2, nv)
        tri = np.where(k < np.asarray(count)[..., None], tri, 0.0)
    return tri.sum(axis=-1)


def rotated_to_geographic(
    rlat_deg: np.ndarray, rlon_deg: np.ndarray, pole_lat: float, pole_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic (lat, lon) in degrees of rotated-pole coordinates (CF ``rotated_latitude_longitude``).

    ``pole_lat``/``pole_lon`` are ``grid_north_pole_latitude/longitude``; ``north_pole_grid_longitude``
    is 0. ``sin(lat) = cos(pl) cos(rlat) cos(rlon) + sin(pl) sin(rlat)``,
    ``lon = pole_lon + 180 + atan2(cos(rlat) sin(rlon), sin(pl) cos(rlat) cos(rlon) - cos(pl) sin(rlat))``,
    normalized to [-180, 180). Agrees with PROJ ``ob_tran`` to ~1e-14 degrees.
    """
    phi = np.deg2rad(np.asarray(rlat_deg, dtype=np.float64))
    lam = np.deg2rad(np.asarray(rlon_deg, dtype=np.float64))
    pl = np.deg2rad(pole_lat)
    sin_lat = np.cos(pl) * np.cos(phi) * np.cos(lam) + np.sin(pl) * np.sin(phi)
    lat = np.rad2deg(np.arcsin(np.clip(sin_lat, -1.0, 1.0)))
    lon = (
        pole_lon
        + 180.0
        + np.rad2deg(
            np.arctan2(np.cos(phi) * np.sin(lam), np.sin(pl) * np.cos(phi) * np.cos(lam) - np.cos(pl) * np.sin(phi))
        )
    )
    lon = np.mod(lon + 180.0, 360.0) - 180.0
    return lat, lon


def east_north_vectors(lon_deg: np.ndarray, lat_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local unit vectors pointing east and north at the given points, each ``(..., 3)``."""
    lon = np.deg2rad(np.asarray(lon_deg, dtype=np.float64))
    lat = np.deg2rad(np.asarray(lat_deg, dtype=np.float64))
    east = np.stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)], axis=-1)
    north = np.stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)], axis=-1)
    return east, north


def bounding_caps(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (unit vector) and chord radius of a cap containing each polygon ``(n, nv, 3)``.

    The cap around the normalized vertex mean that reaches the farthest vertex contains the whole
    polygon (caps smaller than a hemisphere are convex, and so is a cell with great-circle edges),
    so two cells can only overlap when their centres are closer than the sum of the radii.
    """
    centre = normalize(vertices.mean(axis=-2))
    radius = np.linalg.norm(vertices - centre[..., None, :], axis=-1).max(axis=-1)
    return centre, radius


def candidate_pairs(
    centre_a: np.ndarray, radius_a: np.ndarray, centre_b: np.ndarray, radius_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(ia, ib)`` of caps that may intersect (chord distance <= r_a + r_b).

    One KD-tree query with the largest possible distance, then the exact per-pair test; returns
    pairs sorted by ``ib`` then ``ia``.
    """
    from scipy.spatial import cKDTree

    if len(centre_a) == 0 or len(centre_b) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    slack = 1e-9
    max_dist = float(radius_a.max() + radius_b.max()) + slack
    tree_a = cKDTree(centre_a)
    tree_b = cKDTree(centre_b)
    pairs = tree_b.sparse_distance_matrix(tree_a, max_dist, output_type="ndarray")
    ib = pairs["i"].astype(np.int64)
    ia = pairs["j"].astype(np.int64)
    keep = pairs["v"] <= radius_a[ia] + radius_b[ib] + slack
    ia, ib = ia[keep], ib[keep]
    order = np.lexsort((ia, ib))
    return ia[order], ib[order]
