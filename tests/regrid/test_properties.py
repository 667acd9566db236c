"""Method properties on analytic fields: conservation, constants, convergence, masks, vectors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import CurvilinearGrid, GaussianGrid, LatLonGrid, Regridder
from atmorep_coupler.regrid.regridder import compute_weights
from atmorep_coupler.regrid.sphere import east_north_vectors

GRIDS = {
    "1deg": lambda: LatLonGrid(180, 360),
    "2deg": lambda: LatLonGrid(90, 180, lat_order="ascending"),
    "2.5deg": lambda: LatLonGrid(72, 144),
    # Gaussian grids are named N<latitudes per hemisphere> (ECMWF, CDO): N16 has 32 x 64 cells.
    "N16": lambda: GaussianGrid(32),
    "N24": lambda: GaussianGrid(48, lat_order="ascending"),
    # A global curvilinear grid: 6-degree cells in coordinates rotated to a pole at 40N, 170W.
    "rotated": lambda: CurvilinearGrid.rotated_pole(
        -87 + 6 * np.arange(30), -177 + 6 * np.arange(60), pole_lat=40.0, pole_lon=-170.0
    ),
}
PAIRS = [
    ("1deg", "2.5deg"),
    ("N24", "1deg"),
    ("2deg", "N16"),
    ("rotated", "N24"),
    ("N16", "rotated"),
    ("2.5deg", "N24"),
]
_cache: dict = {}


def grid(name):
    if name not in _cache:
        _cache[name] = GRIDS[name]()
    return _cache[name]


@pytest.mark.parametrize("src_name, dst_name", PAIRS)
@pytest.mark.parametrize("method", ["conservative", "conservative_normed"])
def test_conservative_methods_conserve_the_global_integral(field_ylm, src_name, dst_name, method):
    src, dst = grid(src_name), grid(dst_name)
    assert src.is_global and dst.is_global
    regridder = Regridder(src, dst, method)
    x = field_ylm(src.center_lat, src.center_lon)
    y = regridder.apply(x)
    # Area-weighted integrals with each grid's own great-circle areas.
    src_total, dst_total = np.sum(x * src.area), np.sum(y * dst.area)
    assert abs(dst_total / src_total - 1) < 1e-13
    # Constants: FRACAREA rows sum to one, so a constant comes back to round-off;
    # DSTAREA rows sum to frac_b = 1 up to the accuracy of the overlap areas.
    c = regridder.apply(np.full(src.shape, 7.25))
    tol = 8 * np.finfo(float).eps * 7.25 if method == "conservative_normed" else 1e-11
    np.testing.assert_allclose(c, 7.25, rtol=0, atol=tol)
    w = regridder.weights
    assert w.matrix.data.min() > 0


def test_conservative_weights_between_grids_whose_cell_edges_coincide(field_ylm):
    """Cells that share edges put vertices exactly on the clipping planes (distances of round-off
    size and random sign). Regression: 2.8125-degree cells to the 0-centred 5.625-degree data grid
    overflowed the clipping buffer; now every destination is covered once and the integral kept."""
    src = LatLonGrid(64, 128)
    dst = LatLonGrid.from_centers(90 - 5.625 * (np.arange(32) + 0.5), 5.625 * np.arange(64))
    regridder = Regridder(src, dst, "conservative_normed")
    x = field_ylm(src.center_lat, src.center_lon)
    y = regridder.apply(x)
    assert abs(np.sum(y * dst.area) / np.sum(x * src.area) - 1) < 1e-13
    np.testing.assert_allclose(np.asarray(regridder.weights.matrix.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    # the edges coincide: each destination cell holds 2 x 2 source cells (plus, in some rows, slivers
    # where a longer great-circle "latitude" edge bulges into the next band), about a quarter each
    assert np.diff(regridder.weights.matrix.indptr).min() >= 4
    assert np.sort(regridder.weights.matrix.toarray(), axis=1)[:, -4:].sum(axis=1).min() > 0.99


def test_regional_curvilinear_source_conserves_with_fractions(field_ylm):
    src = CurvilinearGrid.rotated_pole(-28.5 + 3 * np.arange(20), -43.5 + 3 * np.arange(30), pole_lat=40, pole_lon=-170)
    dst = grid("2.5deg")
    w = compute_weights(src, dst, "conservative")
    x = field_ylm(src.center_lat, src.center_lon)
    y = w.matrix @ x.ravel()
    np.testing.assert_allclose(w.frac_a, 1.0, atol=1e-13)  # every source cell lies inside the global grid
    assert abs(np.sum(y * dst.area.ravel()) / np.sum(x * src.area) - 1) < 1e-13
    assert 0 < w.frac_b[w.mapped].min() < 0.5 and not w.mapped.all()


def test_lat_lon_candidate_search_finds_every_overlap():
    """The interval search used between lat-lon grids gives the same weights as the KD-tree search."""
    src = LatLonGrid.from_centers(np.arange(30.0, -31.0, -1.5), np.arange(-60.0, 61.0, 2.0))  # regional, lon < 0
    dst = GaussianGrid(32)
    for a, b in ((src, dst), (dst, src)):
        fast = compute_weights(a, b, "conservative")
        general = compute_weights(
            CurvilinearGrid(a.center_lat, a.center_lon, a.corner_lat, a.corner_lon), b, "conservative"
        )
        assert fast.matrix.nnz == general.matrix.nnz > 0
        # Same pairs; the values differ in the last bits only (a lat-lon grid measures one cell per row).
        assert abs(fast.matrix - general.matrix).max() <= 4 * np.finfo(float).eps


def test_overlaps_rotated_between_longitude_sectors_equal_clipping_every_cell():
    """Lat-lon grids with uniform longitudes are clipped in one sector of 360/gcd(nx_a, nx_b) degrees and
    rotated to the others (masks applied after): the same weights as clipping every pair."""
    mask = np.ones((24, 96), bool)
    mask[5:9, 40:47] = False  # a mask that no rotation maps onto itself
    src, dst = GaussianGrid(24, 96, mask=mask), LatLonGrid(36, 72, lon0=3.0)  # 24 sectors of 15 degrees
    for a, b in ((src, dst), (dst, src)):
        fast = compute_weights(a, b, "conservative")
        general = compute_weights(
            CurvilinearGrid(a.center_lat, a.center_lon, a.corner_lat, a.corner_lon, mask=a.mask), b, "conservative"
        )
        # The same pairs, and values equal to the round-off of the area formula (1e-14 here; ESMF's
        # weights are matched to 1e-12).
        assert fast.matrix.nnz == general.matrix.nnz > 0
        assert (fast.matrix.astype(bool) != general.matrix.astype(bool)).nnz == 0
        assert abs(fast.matrix - general.matrix).max() < 1e-13
        np.testing.assert_allclose(fast.frac_a, general.frac_a, rtol=0, atol=1e-13)


def _arc_overlap(w1, e1, w2, e2):
    """Length (degrees) of the overlap of eastward arcs [w1, e1] and [w2, e2] on the circle (each < 180)."""
    len1, len2 = np.mod(e1 - w1, 360.0), np.mod(e2 - w2, 360.0)
    start = np.mod(w1 - w2, 360.0)  # arc 1 starts this far east of arc 2's start
    return np.maximum(0.0, np.minimum(len2, start + len1) - start) + np.maximum(0.0, start + len1 - 360.0)


@pytest.mark.parametrize(
    "make_src, make_dst",
    [
        (lambda: GaussianGrid(16, 32), lambda: LatLonGrid(12, 20, lon0=7.0)),
        (lambda: LatLonGrid.from_centers(np.arange(30.0, -31.0, -7.5), np.arange(-60.0, 61.0, 10.0)), lambda: GaussianGrid(8)),
        (lambda: LatLonGrid(9, 18, lat_order="ascending"), lambda: LatLonGrid(10, 14, lon0=-180.0)),
    ],
    ids=["gaussian_to_shifted", "regional_to_gaussian", "to_minus180_origin"],
)
def test_latitude_band_weights_equal_a_brute_force_band_overlap(make_src, make_dst):
    """``edges="parallels"``: every pair's overlap is its longitude-arc overlap times its sin(lat) overlap."""
    src, dst = make_src(), make_dst()
    s = lambda b: np.sin(np.deg2rad(b))  # noqa: E731
    d_lat = np.maximum(
        0.0,
        np.minimum(s(dst.lat_bounds.max(1))[:, None], s(src.lat_bounds.max(1))[None])
        - np.maximum(s(dst.lat_bounds.min(1))[:, None], s(src.lat_bounds.min(1))[None]),
    )
    d_lon = np.deg2rad(_arc_overlap(src.lon_bounds[None, :, 0], src.lon_bounds[None, :, 1],
                                    dst.lon_bounds[:, None, 0], dst.lon_bounds[:, None, 1]))
    overlap = np.einsum("ij,kl->ikjl", d_lat, d_lon).reshape(dst.size, src.size)  # every (dst, src) pair
    area_b = np.deg2rad(np.mod(dst.lon_bounds[:, 1] - dst.lon_bounds[:, 0], 360.0))[None, :] * np.abs(
        s(dst.lat_bounds[:, 1]) - s(dst.lat_bounds[:, 0])
    )[:, None]
    w = compute_weights(src, dst, "conservative", edges="parallels")
    expected = overlap / area_b.reshape(-1, 1)
    expected[expected < 1e-12] = 0.0
    np.testing.assert_allclose(w.matrix.toarray(), expected, rtol=0, atol=1e-14)  # round-off of weights <= 1
    np.testing.assert_allclose(w.area_b, area_b.ravel(), rtol=1e-15)
    np.testing.assert_allclose(w.frac_b, overlap.sum(1) / area_b.ravel(), rtol=0, atol=1e-14)
    if src.is_global and dst.is_global:  # global grids: every cell is covered once, and the sphere is 4 pi
        np.testing.assert_allclose(w.frac_b, 1.0, rtol=0, atol=1e-14)
        assert abs(overlap.sum() - 4 * np.pi) < 1e-13


def test_latitude_band_weights_refuse_curvilinear_grids():
    rotated = CurvilinearGrid.rotated_pole(np.arange(-10.0, 11.0, 5.0), np.arange(-10.0, 11.0, 5.0), pole_lat=40, pole_lon=0)
    with pytest.raises(RegridError, match="edges='parallels' needs cells bounded by parallels.*CurvilinearGrid"):
        Regridder(rotated, LatLonGrid(18, 36), "conservative", edges="parallels")
    with pytest.raises(RegridError, match="apply to the native conservative methods only"):
        Regridder(LatLonGrid(18, 36), LatLonGrid(9, 18), "bilinear", edges="parallels")
    with pytest.raises(RegridError, match="min_fraction must lie in"):
        Regridder(LatLonGrid(18, 36), LatLonGrid(9, 18), "conservative", min_fraction=1.5)


@pytest.mark.parametrize("dst_name", ["N16", "rotated"])
def test_bilinear_error_falls_at_second_order(field_ylm, dst_name):
    dst = grid(dst_name)
    exact = field_ylm(dst.center_lat, dst.center_lon)
    errors = []
    for nlat in (45, 90, 180):
        src = LatLonGrid(nlat, 2 * nlat)
        y = Regridder(src, dst, "bilinear").apply(field_ylm(src.center_lat, src.center_lon))
        errors.append(np.abs(y - exact).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert (ratios > 3.3).all(), f"errors {errors}, ratios {ratios}"
    assert errors[-1] < 1e-3


@pytest.mark.parametrize("method", ["bilinear", "conservative", "conservative_normed", "nearest_s2d", "nearest_d2s"])
def test_same_grid_is_the_identity(method):
    g = grid("N16")
    w = compute_weights(g, g, method)
    eye = abs(w.matrix - np.eye(g.size)).max()
    assert eye < 1e-12


def test_nearest_neighbours_match_brute_force():
    src, dst = LatLonGrid(24, 48, lon0=3.0), GaussianGrid(16)
    mask = np.random.default_rng(0).random(src.shape) > 0.3
    src = src.with_mask(mask)
    d = cdist(dst.center_xyz.reshape(-1, 3), src.center_xyz.reshape(-1, 3))
    d[:, ~mask.ravel()] = np.inf
    w = compute_weights(src, dst, "nearest_s2d")
    row, col, S = w.triplets()
    np.testing.assert_array_equal(row, np.arange(dst.size))
    np.testing.assert_array_equal(col, d.argmin(axis=1))
    assert (S == 1).all()
    w = compute_weights(src, dst, "nearest_d2s")
    row, col, S = w.triplets()
    nearest_dst = d.argmin(axis=0)
    np.testing.assert_array_equal(np.sort(col), np.flatnonzero(mask.ravel()))
    np.testing.assert_array_equal(row[np.argsort(col)], nearest_dst[np.sort(col)])
    # Each source lands exactly once: the plain sum is conserved.
    x = np.random.default_rng(1).random(src.shape)
    assert np.isclose((w.matrix @ x.ravel()).sum(), x[mask].sum(), rtol=1e-13)


def test_nearest_ties_go_to_the_smaller_source_index():
    from atmorep_coupler.regrid.nearest import nearest_index

    # Candidates in a shuffled order; targets exactly equidistant (in floating point) from several.
    candidates = np.array([[0.0, -1, 0], [-1, 0, 0], [0, 1, 0], [1, 0, 0]])
    a = np.sqrt(0.5)
    targets = np.array([[0.0, 0, 1], [a, a, 0], [-a, a, 0], [a, -a, 0], [0, 0, -1]])
    np.testing.assert_array_equal(nearest_index(targets, candidates), [0, 2, 1, 0, 0])


@pytest.mark.parametrize("method", ["conservative_normed", "bilinear", "nearest_s2d"])
def test_masked_mapping_never_spreads_land_values_into_the_ocean(field_ylm, method):
    src, dst = LatLonGrid(90, 180), GaussianGrid(48)
    lat, lon = src.center_lat, src.center_lon
    land = ((lat > -30) & (lat < 40) & (lon > 20) & (lon < 80)) | (lat < -70)
    ocean = field_ylm(lat, lon)
    x = np.where(land, np.nan, ocean)  # land holds no valid data at all
    x_big = np.where(land, 1e6, ocean)  # ... or a value that would show up anywhere it leaks
    lo, hi = ocean[~land].min(), ocean[~land].max()
    # 1) static mask in the grid (ESMF style), with a nearest-neighbour fallback for cells left unmapped
    r = Regridder(src.with_mask(~land), dst, method, fallback=("nearest_s2d",))
    for field in (x, x_big):
        y = r.apply(field)
        assert np.isfinite(y).all()
        assert y.min() >= lo - 1e-12 and y.max() <= hi + 1e-12
    # 2) fraction-weighted (CMEPS): no mask in the grid, land fraction 0
    r = Regridder(src, dst, method)
    for field in (x, x_big):
        y, frac = r.apply_fraction_weighted(field, (~land).astype(float))
        ok = frac > 0
        assert y[ok].min() >= lo - 1e-12 and y[ok].max() <= hi + 1e-12
        assert np.isnan(y[~ok]).all()


def test_fraction_weighted_mapping_conserves_the_ocean_integral(field_ylm):
    src, dst = LatLonGrid(90, 180), grid("N24")
    frac = np.clip(np.cos(np.deg2rad(3 * src.center_lon)) + 0.3, 0, 1)  # partial fractions
    x = field_ylm(src.center_lat, src.center_lon)
    r = Regridder(src, dst, "conservative")
    y, frac_dst = r.apply_fraction_weighted(x, frac)
    # sum(y f_b A_b) = sum(x f_a A_a): the fraction-weighted field carries the ocean integral.
    lhs = np.nansum(y * frac_dst * dst.area)
    rhs = np.sum(x * frac * src.area)
    assert abs(lhs / rhs - 1) < 1e-13
    np.testing.assert_allclose(np.sum(frac_dst * dst.area), np.sum(frac * src.area), rtol=1e-13)


def test_fallback_chain_fills_unmapped_cells_in_order(field_ylm):
    src = CurvilinearGrid.rotated_pole(-28.5 + 3 * np.arange(20), -43.5 + 3 * np.arange(30), pole_lat=40, pole_lon=-170)
    dst_mask = np.ones((36, 72), bool)
    dst_mask[0] = False  # a masked destination row stays unmapped by every method
    dst = LatLonGrid(36, 72, mask=dst_mask)
    x = field_ylm(src.center_lat, src.center_lon)
    primary = Regridder(src, dst, "conservative_normed")
    nearest = Regridder(src, dst, "nearest_s2d")
    chained = Regridder(src, dst, "conservative_normed", fallback=("nearest_s2d", -1.0))
    y0, yn, y = primary.apply(x), nearest.apply(x), chained.apply(x)
    mapped = np.isfinite(y0)
    assert 0 < mapped.sum() < dst_mask.sum()
    np.testing.assert_array_equal(y[mapped], y0[mapped])
    np.testing.assert_array_equal(y[~mapped & dst_mask], yn[~mapped & dst_mask])
    np.testing.assert_array_equal(y[~dst_mask], -1.0)
    assert np.isnan(primary.apply(x)[~mapped]).all()  # without a fixed value: NaN


def test_vector_mapping_stays_smooth_across_the_poles():
    """Solid-body rotation about an equatorial axis: the flow crosses both poles.

    The 2.5-degree rows at +-86.25 and +-88.75 lie poleward of the Gaussian grid's outermost rows,
    so they are interpolated through ESMF's pole triangles.
    """
    src, dst = GaussianGrid(32), LatLonGrid(72, 144)

    def wind(grid):
        xyz = grid.center_xyz
        velocity = np.cross(np.array([1.0, 0.0, 0.0]), xyz)  # Omega x r
        east, north = east_north_vectors(grid.center_lon, grid.center_lat)
        return (velocity * east).sum(-1), (velocity * north).sum(-1)

    u, v = wind(src)
    u_exact, v_exact = wind(dst)
    r = Regridder(src, dst, "bilinear")
    u_out, v_out = r.apply_vector(u, v)
    vector_err = max(np.abs(u_out - u_exact).max(), np.abs(v_out - v_exact).max())
    scalar_err = max(np.abs(r.apply(u) - u_exact).max(), np.abs(r.apply(v) - v_exact).max())
    assert vector_err < 3e-3  # second-order small (about h^2 / 8 for 5.6-degree cells), polar rows included
    assert scalar_err > 0.5  # components mapped as scalars break down at the poles (speed is 1 there)
