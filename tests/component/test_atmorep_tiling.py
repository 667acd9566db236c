"""Global tiling of the AtmoRep component: coverage (D15), poles, dateline, exact reconstruction, seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.component.tiling import GlobalTiling, taper, tile_starts
from atmorep_coupler.errors import ConfigError

CASES = [
    (32, 64, (8, 16), (4, 8)),  # the default data and config
    (32, 64, (8, 16), (0, 0)),  # no overlap: tiles abut
    (33, 70, (8, 16), (3, 5)),  # sizes that are no multiple of the stride
    (24, 48, (24, 12), (0, 6)),  # one tile row spans pole to pole
    (721, 1440, (54, 108), (6, 12)),  # ERA5 0.25 deg with AtmoRep's 13.5 x 27 deg neighbourhood
]


@pytest.mark.parametrize("nlat, nlon, tile, overlap", CASES)
def test_every_point_is_covered_and_tiles_stay_on_the_sphere(nlat, nlon, tile, overlap):
    tiling = GlobalTiling(nlat, nlon, tile, overlap)
    coverage = tiling.coverage()
    assert coverage.shape == (nlat, nlon) and coverage.min() >= 1  # D15: the reference left [702:721, 1040:1440] empty
    rows, cols = tiling.rows.numpy(), tiling.cols.numpy()
    assert rows.min() == 0 and rows.max() == nlat - 1  # polar rows included, no tile crosses a pole
    assert np.all(np.diff(rows, axis=1) == 1)
    assert np.all((0 <= cols) & (cols < nlon))
    # consecutive starts are at most one stride apart, so neighbours overlap by >= the requested points
    row0, col0 = np.unique(tiling.origins[:, 0]), np.unique(tiling.origins[:, 1])
    assert np.diff(row0).max(initial=0) <= tile[0] - overlap[0]
    assert np.diff(np.append(col0, col0[0] + nlon)).max() <= tile[1] - overlap[1]
    assert tiling.count == row0.size * col0.size


def test_tiles_wrap_across_the_dateline():
    tiling = GlobalTiling(32, 64, (8, 16), (4, 8))
    cols = tiling.cols.numpy()
    crossing = [c for c in cols if 63 in c and 0 in c]
    assert crossing and all(np.all(np.diff(c) % 64 == 1) for c in cols)  # contiguous modulo 360 deg


@pytest.mark.parametrize("nlat, nlon, tile, overlap", CASES[:4])
def test_identical_tiles_reconstruct_the_field_exactly(nlat, nlon, tile, overlap):
    tiling = GlobalTiling(nlat, nlon, tile, overlap)
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


def test_blending_weights_have_no_seams():
    """Per-tile errors (a constant bias per tile) blend into a smooth field: the largest jump between
    neighbouring points is a fraction of the bias range, where hard stitching jumps by whole biases."""
    rng = np.random.default_rng(1)
    for overlap, bound in (((4, 8), 0.35), ((0, 0), 1.0)):
        tiling = GlobalTiling(32, 64, (8, 16), overlap)
        bias = torch.from_numpy(rng.normal(size=(tiling.count, 1, 1))).expand(-1, 8, 16)
        blended, _ = tiling.blend(bias)
        jumps = [blended.diff(dim=0).abs().max(), blended.diff(dim=1).abs().max(), (blended[:, 0] - blended[:, -1]).abs().max()]
        assert max(float(j) for j in jumps) <= bound * float(bias.max() - bias.min())
    w = taper(16)
    assert np.all(w > 0) and np.allclose(w, w[::-1]) and w.argmax() in (7, 8) and w[0] < 0.01


def test_masked_blend_averages_only_contributing_tiles():
    tiling = GlobalTiling(32, 64, (8, 16), (4, 8))
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
