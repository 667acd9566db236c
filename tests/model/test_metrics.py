"""Weighted scores against numpy on whole arrays; area weighting applied once over the sampler's windows
(a latitude-only field gives its analytic spherical mean); calibration; additivity across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.data.sampler import row_areas
from atmorep_coupler.model.metrics import ScoreAccumulator, scores, target_rows

sr = pytest.importorskip("scoringrules")


def random_case(seed: int, n: int = 40, members: int = 6):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n, 2, 3, 4))
    ens = truth[:, None] + rng.normal(scale=0.5, size=(n, members, 2, 3, 4)) + 0.3
    level = rng.integers(0, 2, n)
    weight = rng.uniform(0.1, 2.0, size=(n, 3))  # per row of each token, as Batch.row_weight gives them
    return truth, ens, level, weight


def accumulate(truth, ens, level, weight, members=True):
    acc = ScoreAccumulator({"f": ["850hPa", "500hPa"]}, ensemble_size=ens.shape[1])
    acc.update("f", torch.from_numpy(ens.mean(1)), torch.from_numpy(truth), torch.from_numpy(level),
               torch.from_numpy(weight), torch.from_numpy(ens) if members else None)
    return acc


def test_weighted_rmse_crps_spread_against_numpy():
    truth, ens, level, weight = random_case(0)
    got = accumulate(truth, ens, level, weight).scores()
    w = np.broadcast_to(weight[:, None, :, None], truth.shape)
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


def test_a_latitude_only_field_scores_its_analytic_spherical_mean(tiny_store):
    """Squared errors e² = sin²(latitude) on the default grid, scored over windows the sampler draws:
    the score must be the spherical mean of sin², 1/3. Weighting by cos(latitude) on top of the
    sampler's area-proportional draw (the old code) gives 0.23, near the 1/5 of cos² weighting."""
    from atmorep_coupler.data import open_store
    from atmorep_coupler.data.sampler import NeighbourhoodSampler
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config

    store = open_store(tiny_store)
    model = load_run_config(config_path("default")).model
    sampler = NeighbourhoodSampler(store, model, batch_size=512)
    lat = store.latitudes
    _, ny, nx = sampler.extent
    # exact: over the sampling distribution each row's expected weight is proportional to its band area
    cover = np.zeros(lat.size)
    for start, p in zip(sampler.row_starts, sampler.row_probability):
        cover[start:start + ny] += p
    expected_weight = cover * sampler.point_weights
    np.testing.assert_allclose(expected_weight / expected_weight.sum(), row_areas(lat) / row_areas(lat).sum(), rtol=1e-12)
    # Monte Carlo through the accumulator, with the rows the sampler draws
    acc = ScoreAccumulator({"f": ["surface"]})
    for index in range(16):
        rows = sampler.draw(index)[:, 1:2] + np.arange(ny)  # [B, ny]
        error = np.abs(np.sin(np.deg2rad(lat[rows])))[:, None, :, None] * np.ones((1, 1, 1, nx))
        acc.update("f", torch.from_numpy(error), torch.zeros(error.shape, dtype=torch.float64),
                   torch.zeros(rows.shape[0], dtype=torch.long), torch.from_numpy(sampler.point_weights[rows]))
    mean_square = acc.scores()["f/rmse"] ** 2
    grid_mean = (row_areas(lat) * np.sin(np.deg2rad(lat)) ** 2).sum() / row_areas(lat).sum()  # quadrature of 1/3
    assert grid_mean == pytest.approx(1 / 3, abs=2e-3)
    assert mean_square == pytest.approx(grid_mean, abs=0.01)  # the old double weighting gives 0.23


def test_weights_decide_what_an_error_counts():
    """Errors only in the first row count w0 / (w0 + w1) of the squared error."""
    truth = np.zeros((2, 1, 2, 1))
    pred = truth.copy()
    pred[:, :, 0] = 1.0  # error in the first row only
    weight = np.array([[0.2, 1.0], [0.2, 1.0]])
    acc = ScoreAccumulator({"f": ["surface"]})
    acc.update("f", torch.from_numpy(pred), torch.from_numpy(truth), torch.zeros(2, dtype=torch.long),
               torch.from_numpy(weight))
    assert acc.scores()["f/rmse"] == pytest.approx(np.sqrt(0.2 / 1.2))


def test_spread_skill_is_one_for_a_calibrated_ensemble():
    rng = np.random.default_rng(1)
    n, M = 4000, 8
    centre = rng.normal(size=(n, 1, 1, 1))
    truth = centre + rng.normal(size=(n, 1, 1, 1))  # truth and members exchangeable
    ens = centre[:, None] + rng.normal(size=(n, M, 1, 1, 1))
    got = accumulate(truth, ens, np.zeros(n, dtype=int), np.ones((n, 1))).scores()
    assert got["f/spread_skill/850hPa"] == pytest.approx(1.0, abs=0.05)


def test_sums_add_across_ranks():
    truth, ens, level, weight = random_case(2, n=60)
    whole = accumulate(truth, ens, level, weight).scores()
    parts = [accumulate(truth[s], ens[s], level[s], weight[s]).sums() for s in (slice(0, 25), slice(25, 60))]
    summed = {k: parts[0][k] + parts[1][k] for k in parts[0]}
    combined = scores(summed, ens.shape[1])
    assert combined.keys() == whole.keys()
    for k in whole:
        assert combined[k] == pytest.approx(whole[k], rel=1e-9)


def test_target_rows_picks_the_token_rows():
    per_row = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6)  # B=2, Y*y = 3*2
    index = torch.tensor([[1, 0, 0, 2, 0], [0, 1, 1, 0, 3]])  # (sample, level, time, row, column)
    torch.testing.assert_close(target_rows(per_row, index, (1, 2, 2)), torch.tensor([[10.0, 11.0], [0.0, 1.0]]))
