"""Global tiling of the AtmoRep component: coverage (every point), poles, dateline, exact reconstruction, the
staggered pass and the blending weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.model.tiling import GlobalTiling, edge_ramp, seam_ratios, tile_starts, token_taper
from atmorep_coupler.errors import ConfigError

CASES = [
    (32, 64, (8, 16), (4, 8)),  # the default data and config
    (32, 64, (8, 16), (0, 0)),  # no overlap: tiles abut
    (33, 70, (8, 16), (3, 5)),  # sizes that are no multiple of the stride
    (24, 48, (24, 12), (0, 6)),  # one tile row spans pole to pole
    (721, 1440, (54, 108), (6, 12)),  # ERA5 0.25 deg with AtmoRep's 13.5 x 27 deg neighbourhood
]


@pytest.mark.parametrize("nlat, nlon, tile, overlap", CASES)
@pytest.mark.parametrize("stagger", [False, True])
def test_every_point_is_covered_and_tiles_stay_on_the_sphere(nlat, nlon, tile, overlap, stagger):
    tiling = GlobalTiling(nlat, nlon, tile, overlap, (2, 2) if tile[0] % 2 == 0 else (1, 1), stagger=stagger)
    coverage = tiling.coverage()
    assert coverage.shape == (nlat, nlon) and coverage.min() >= 1  # the reference code left [702:721, 1040:1440] of 0.25 deg empty
    rows, cols = tiling.rows.numpy(), tiling.cols.numpy()
    assert rows.min() == 0 and rows.max() == nlat - 1  # polar rows included, no tile crosses a pole
    assert np.all(np.diff(rows, axis=1) == 1)
    assert np.all((0 <= cols) & (cols < nlon))
    # consecutive starts are at most one stride apart, so neighbours overlap by >= the requested points
    first = GlobalTiling(nlat, nlon, tile, overlap).origins  # the first pass alone
    row0, col0 = np.unique(first[:, 0]), np.unique(first[:, 1])
    assert np.diff(row0).max(initial=0) <= tile[0] - overlap[0]
    assert np.diff(np.append(col0, col0[0] + nlon)).max() <= tile[1] - overlap[1]
    assert first.shape[0] == row0.size * col0.size
    assert torch.all(tiling.weights > 0)


def test_tiles_wrap_across_the_dateline():
    tiling = GlobalTiling(32, 64, (8, 16), (4, 8))
    cols = tiling.cols.numpy()
    crossing = [c for c in cols if 63 in c and 0 in c]
    assert crossing and all(np.all(np.diff(c) % 64 == 1) for c in cols)  # contiguous modulo 360 deg


@pytest.mark.parametrize("nlat, nlon, tile, overlap", CASES[:4])
@pytest.mark.parametrize("stagger", [False, True])
def test_identical_tiles_reconstruct_the_field_exactly(nlat, nlon, tile, overlap, stagger):
    tiling = GlobalTiling(nlat, nlon, tile, overlap, (4, 4), stagger=stagger)
    field = torch.from_numpy(np.random.default_rng(0).normal(280.0, 20.0, (2, 3, nlat, nlon)).astype(np.float32))
    tiles = tiling.gather(field)  # the identity "network": every tile returns what it was given
    assert tiles.shape == (tiling.count, 2, 3, *tile)
    blended, weight = tiling.blend(tiles)
    assert torch.equal(blended.float(), field)
    assert torch.all(weight > 0)
    # gather is plain indexing: tile k holds field[rows[k]][:, cols[k]]
    k = tiling.count - 1
    expect = field.numpy()[..., tiling.rows[k].numpy()[:, None], tiling.cols[k].numpy()[None, :]]
    np.testing.assert_array_equal(tiles[k].numpy(), expect)


def test_staggered_pass_puts_token_interiors_on_every_token_and_tile_edge():
    """Default data and config: tiles of 8 x 16 points, tokens of 4 x 4. Every grid line where a tile of
    one pass has a token (or tile) edge lies at least one point inside a token of a tile of the other pass."""
    tiling = GlobalTiling(32, 64, (8, 16), (0, 0), (4, 4), stagger=True)
    assert tiling.count == 32  # 16 + 16: fewer than the 56 of a single pass overlapping by half a tile
    passes = {0: tiling.origins[:16], 1: tiling.origins[16:]}
    assert set(passes[0][:, 0]) == {0, 8, 16, 24} and set(passes[1][:, 0]) == {2, 6, 14, 22}
    assert set(passes[0][:, 1]) == {0, 16, 32, 48} and set(passes[1][:, 1]) == {10, 26, 42, 58}

    def lines(origins, axis, size, n):  # token edges ("line before index i") of one pass, inside the grid
        edges = (origins[:, axis][:, None] + np.arange(0, size + 1, 4)).ravel()
        return set((edges % n).tolist()) if axis else {e for e in edges.tolist() if 0 < e < n}

    def inside_a_token(origins, axis, size, n, line):
        offset = (line - origins[:, axis]) % n if axis else line - origins[:, axis]
        return np.any((offset > 0) & (offset < size) & (offset % 4 != 0))

    for a, b in ((0, 1), (1, 0)):
        for axis, size, n in ((0, 8, 32), (1, 16, 64)):
            for line in lines(passes[a], axis, size, n):
                assert inside_a_token(passes[b], axis, size, n, line), (a, axis, line)


def test_weights_fade_at_tile_edges_but_not_at_the_poles():
    tiling = GlobalTiling(32, 64, (8, 16), (0, 0), (4, 4), stagger=True)
    w = tiling.weights.numpy()
    north = np.flatnonzero(tiling.origins[:, 0] == 0)[0]
    inner = np.flatnonzero(tiling.origins[:, 0] == 8)[0]
    np.testing.assert_allclose(w[north][:, 6], edge_ramp(8, 4, start=False, end=True) * token_taper(8, 4)
                               * edge_ramp(16, 4, start=True, end=True)[6] * token_taper(16, 4)[6])
    assert w[north][0, 6] > w[inner][0, 6] * 3  # the polar row is not faded: no tile lies beyond it
    np.testing.assert_allclose(edge_ramp(8, 4, start=True, end=True), [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125])
    np.testing.assert_allclose(token_taper(4, 4), np.sin(np.pi * (np.arange(4) + 0.5) / 4) ** 2)


def test_seam_ratios_of_smooth_and_blocky_fields():
    lat, lon = np.meshgrid(np.linspace(-1.4, 1.4, 32), np.linspace(0, 2 * np.pi, 64, endpoint=False), indexing="ij")
    smooth = np.sin(3 * lon) * np.cos(lat) + lat
    ratios = seam_ratios(smooth, (4, 4))
    assert abs(ratios["token"] - 1) < 0.05 and abs(ratios["staggered"] - 1) < 0.05
    blocky = smooth + np.kron(np.random.default_rng(0).normal(size=(8, 16)), np.ones((4, 4)))
    assert seam_ratios(blocky, (4, 4))["token"] > 3


def test_masked_blend_averages_only_contributing_tiles():
    tiling = GlobalTiling(32, 64, (8, 16), (4, 8), (4, 4))
    values = torch.from_numpy(np.random.default_rng(2).normal(size=(tiling.count, 8, 16)))
    mask = torch.zeros(tiling.count, 8, 16, dtype=torch.bool)
    mask[0] = True  # only the first tile (rows 0..7, columns 0..15) contributes
    blended, weight = tiling.blend(values, mask)
    assert torch.allclose(blended[:8, :16], values[0]) and torch.all(weight[:8, :16] > 0)
    assert torch.all(blended[8:] == 0) and torch.all(weight[8:] == 0) and torch.all(weight[:, 16:] == 0)


def test_starts_and_bad_tilings():
    assert tile_starts(32, 8, 4, periodic=False).tolist() == [0, 4, 8, 12, 16, 20, 24]
    assert tile_starts(64, 16, 8, periodic=True).tolist() == list(range(0, 64, 8))
    assert tile_starts(70, 16, 11, periodic=True).tolist() == [0, 10, 20, 30, 40, 50, 60]
    with pytest.raises(ConfigError, match="tile_overlap"):
        GlobalTiling(32, 64, (8, 16), (8, 0))
    with pytest.raises(ConfigError, match="does not fit"):
        GlobalTiling(32, 64, (40, 16), (0, 0))
    with pytest.raises(ConfigError, match="do not divide"):
        GlobalTiling(32, 64, (8, 16), (0, 0), (3, 4))


def test_a_refined_tiling_covers_the_same_areas_on_the_finer_grid():
    """The tiles of a field r times finer (a downscaled field): tile k spans the same latitude band and
    starts at the same first cell centre as on the model grid; every fine point is covered; identical
    tiles reproduce a fine field."""
    coarse = GlobalTiling(32, 64, (8, 16), (0, 0), (4, 4), stagger=True)
    fine = coarse.refined(2)
    assert fine.count == coarse.count and fine.tile == (16, 32) and fine.token == (8, 8)
    lat_c, lat_f = 90 - 5.625 * (np.arange(32) + 0.5), 90 - 2.8125 * (np.arange(64) + 0.5)
    np.testing.assert_allclose(lat_f[fine.rows.numpy()].mean(1), lat_c[coarse.rows.numpy()].mean(1), atol=1e-12)
    np.testing.assert_array_equal(fine.cols[:, 0].numpy(), 2 * coarse.cols[:, 0].numpy())
    assert fine.coverage().min() >= 1
    field = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 64, 128)))
    blended, weight = fine.blend(fine.gather(field))
    assert weight.min() > 0
    np.testing.assert_allclose(blended.numpy(), field.numpy(), rtol=0, atol=1e-12)
    assert coarse.refined(1) is coarse
