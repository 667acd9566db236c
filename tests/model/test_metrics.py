"""Latitude-weighted scores against numpy on whole arrays; calibration; additivity across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.model.metrics import ScoreAccumulator, scores, target_latitudes

sr = pytest.importorskip("scoringrules")


def random_case(seed: int, n: int = 40, members: int = 6):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, 2, 3, 4))
    ens = truth[:, None] + rng.normal(scale=0.5, size=(n, members, 2, 3, 4)) + 0.3
    level = rng.integers(0, 2, n)
    lat = rng.uniform(-80, 80, size=(n, 3))
    return truth, ens, level, lat


def accumulate(truth, ens, level, lat, members=True):
    acc = ScoreAccumulator({"f": ["850hPa", "500hPa"]}, ensemble_size=ens.shape[1])
    acc.update("f", torch.from_numpy(ens.mean(1)), torch.from_numpy(truth), torch.from_numpy(level),
               torch.from_numpy(lat), torch.from_numpy(ens) if members else None)
    return acc


def test_weighted_rmse_crps_spread_against_numpy():
    truth, ens, level, lat = random_case(0)
    got = accumulate(truth, ens, level, lat).scores()
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None, :, None], truth.shape)
    crps = sr.crps_ensemble(truth, np.moveaxis(ens, 1, -1), estimator="fair")
    var = ens.var(1, ddof=1)
    for k, label in enumerate(["850hPa", "500hPa"]):
        sel = level == k
        ww = w[sel]
        rmse = np.sqrt((ww * (ens.mean(1)[sel] - truth[sel]) ** 2).sum() / ww.sum())
        assert got[f"f/rmse/{label}"] == pytest.approx(rmse, rel=1e-10)
        assert got[f"f/crps/{label}"] == pytest.approx((ww * crps[sel]).sum() / ww.sum(), rel=1e-5)
        spread = np.sqrt((ww * var[sel]).sum() / ww.sum())
        assert got[f"f/spread/{label}"] == pytest.approx(spread, rel=1e-5)
        M = ens.shape[1]
        assert got[f"f/spread_skill/{label}"] == pytest.approx(np.sqrt((M + 1) / M) * spread / rmse, rel=1e-5)
    rmse_all = np.sqrt((w * (ens.mean(1) - truth) ** 2).sum() / w.sum())
    assert got["f/rmse"] == pytest.approx(rmse_all, rel=1e-10)


def test_latitude_weighting_matters():
    """Errors only at 80 degrees count cos(80) as much as the same errors at the equator."""
    truth = np.zeros((2, 1, 2, 1))
    pred = truth.copy()
    pred[:, :, 0] = 1.0  # error in the first row only
    lat = np.array([[80.0, 0.0], [80.0, 0.0]])
    acc = ScoreAccumulator({"f": ["surface"]})
    acc.update("f", torch.from_numpy(pred), torch.from_numpy(truth), torch.zeros(2, dtype=torch.long),
               torch.from_numpy(lat))
    c = np.cos(np.deg2rad(80))
    assert acc.scores()["f/rmse"] == pytest.approx(np.sqrt(c / (c + 1)))


def test_spread_skill_is_one_for_a_calibrated_ensemble():
    rng = np.random.default_rng(1)
    n, M = 4000, 8
    centre = rng.normal(size=(n, 1, 1, 1))
    truth = centre + rng.normal(size=(n, 1, 1, 1))  # truth and members exchangeable
    ens = centre[:, None] + rng.normal(size=(n, M, 1, 1, 1))
    got = accumulate(truth, ens, np.zeros(n, dtype=int), np.zeros((n, 1))).scores()
    assert got["f/spread_skill/850hPa"] == pytest.approx(1.0, abs=0.05)


def test_sums_add_across_ranks():
    truth, ens, level, lat = random_case(2, n=60)
    whole = accumulate(truth, ens, level, lat).scores()
    parts = [accumulate(truth[s], ens[s], level[s], lat[s]).sums() for s in (slice(0, 25), slice(25, 60))]
    summed = {k: parts[0][k] + parts[1][k] for k in parts[0]}
    combined = scores(summed, ens.shape[1])
    assert combined.keys() == whole.keys()
    for k in whole:
        assert combined[k] == pytest.approx(whole[k], rel=1e-9)


def test_target_latitudes_picks_the_token_rows():
    lat = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6)  # B=2, Y*y = 3*2
    index = torch.tensor([[1, 0, 0, 2, 0], [0, 1, 1, 0, 3]])  # (sample, level, time, row, column)
    torch.testing.assert_close(target_latitudes(lat, index, (1, 2, 2)), torch.tensor([[10.0, 11.0], [0.0, 1.0]]))
