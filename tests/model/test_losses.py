"""Losses against closed forms and the scoringrules / properscoring references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atmorep_coupler.model.losses import LOSSES, ensemble_crps, gaussian_crps, stats_loss, total_loss
from atmorep_coupler.model.tail import EnsembleOutput

sr = pytest.importorskip("scoringrules")
ps = pytest.importorskip("properscoring")


def test_gaussian_crps_reference_values_d1():
    """The values the reference's broken ``crps`` got wrong (1.584, 0.726, 7.634)."""
    y = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    crps = gaussian_crps(torch.zeros(3, dtype=torch.float64), torch.full((3,), 0.7, dtype=torch.float64), y)
    np.testing.assert_allclose(crps.numpy(), [0.214, 0.653, 1.606], atol=5e-4)


def test_gaussian_crps_matches_scoringrules_and_properscoring():
    rng = np.random.default_rng(0)
    y, mu, sigma = rng.normal(size=500), rng.normal(size=500), rng.uniform(0.05, 3.0, 500)
    ours = gaussian_crps(*(torch.from_numpy(a) for a in (mu, sigma, y))).numpy()
    np.testing.assert_allclose(ours, sr.crps_normal(y, mu, sigma), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours, ps.crps_gaussian(y, mu, sigma), rtol=1e-10, atol=1e-12)


def test_ensemble_crps_matches_references():
    rng = np.random.default_rng(1)
    members = rng.normal(size=(64, 7, 3))  # [N, M, points]
    y = rng.normal(size=(64, 3))
    fct = np.moveaxis(members, 1, -1)
    fair = ensemble_crps(torch.from_numpy(members), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(fair, sr.crps_ensemble(y, fct, estimator="fair"), rtol=1e-10, atol=1e-12)
    plain = ensemble_crps(torch.from_numpy(members), torch.from_numpy(y), fair=False).numpy()
    np.testing.assert_allclose(plain, ps.crps_ensemble(y, fct), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(plain, sr.crps_ensemble(y, fct, estimator="nrg"), rtol=1e-10, atol=1e-12)


def test_fair_ensemble_crps_approaches_gaussian_crps_for_large_ensembles():
    rng = np.random.default_rng(2)
    mu, sigma, y = 0.4, 1.3, np.array([-1.0, 0.2, 2.5])
    members = torch.from_numpy(mu + sigma * rng.standard_normal((3, 40000)))
    est = ensemble_crps(members, torch.from_numpy(y))
    exact = gaussian_crps(torch.full((3,), mu, dtype=torch.float64), torch.full((3,), sigma, dtype=torch.float64),
                          torch.from_numpy(y))
    np.testing.assert_allclose(est.numpy(), exact.numpy(), atol=0.01)


def test_fair_crps_spread_term_carries_gradient_d2():
    """d CRPS / d(spread) must include the spread term: compare autograd with finite differences of
    scoringrules' fair CRPS, and check it is not the MAE-only gradient of the reference."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal(8)
    z = (z - z.mean()) / z.std()
    scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.1], dtype=torch.float64)
    members = (scale * torch.from_numpy(z))[None, :]  # [1, M]
    ensemble_crps(members, y).sum().backward()
    h = 1e-6
    fd = (sr.crps_ensemble(0.1, (0.5 + h) * z, estimator="fair") - sr.crps_ensemble(0.1, (0.5 - h) * z,
                                                                                       estimator="fair")) / (2 * h)
    assert scale.grad.item() == pytest.approx(fd, rel=1e-5)
    mae_only = np.mean(np.sign(0.5 * z - 0.1) * z)  # the gradient with the spread term detached
    assert abs(scale.grad.item() - mae_only) > 0.1


def test_stats_loss_formula():
    rng = np.random.default_rng(4)
    members = torch.from_numpy(rng.normal(size=(20, 5, 1, 2, 2)))
    y = torch.from_numpy(rng.normal(size=(20, 1, 2, 2)))
    out = EnsembleOutput.from_members(members)
    mu, sigma = members.numpy().mean(1), members.numpy().std(1, ddof=1)
    g = np.exp(-((y.numpy() - mu) ** 2) / (2 * sigma**2))
    expected = ((g - 1) ** 2).mean() + np.sqrt(sigma).mean()
    assert float(stats_loss(out, y)) == pytest.approx(expected, rel=1e-5)


def test_simple_losses_against_numpy():
    rng = np.random.default_rng(5)
    members = rng.normal(size=(10, 4, 1, 2, 2))
    y = rng.normal(size=(10, 1, 2, 2))
    out = EnsembleOutput.from_members(torch.from_numpy(members))
    yt = torch.from_numpy(y)
    assert float(LOSSES["mse"](out, yt)) == pytest.approx(((members.mean(1) - y) ** 2).mean())
    assert float(LOSSES["mse_ensemble"](out, yt)) == pytest.approx(((members - y[:, None]) ** 2).mean())
    assert float(LOSSES["crps_ensemble"](out, yt)) == pytest.approx(
        sr.crps_ensemble(y, np.moveaxis(members, 1, -1), estimator="fair").mean())
    assert float(LOSSES["crps_gaussian"](out, yt)) == pytest.approx(
        sr.crps_normal(y, members.mean(1), members.std(1, ddof=1)).mean())


def test_total_loss_is_weighted_mean_and_skips_fields_without_targets():
    rng = np.random.default_rng(6)
    outs, targets = {}, {}
    for name, n in (("a", 6), ("b", 9), ("c", 0)):
        outs[name] = EnsembleOutput.from_members(torch.from_numpy(rng.normal(size=(n, 3, 1, 2, 2))))
        targets[name] = torch.from_numpy(rng.normal(size=(n, 1, 2, 2)))
    loss_w, field_w = {"mse": 2.0, "mse_ensemble": 1.0}, {"a": 1.0, "b": 3.0, "c": 5.0}
    total, parts = total_loss(outs, targets, loss_w, field_w)
    expected = sum(loss_w[l] * field_w[f] * float(LOSSES[l](outs[f], targets[f])) for l in loss_w for f in "ab")
    expected /= sum(loss_w[l] * field_w[f] for l in loss_w for f in "ab")
    assert float(total) == pytest.approx(expected)
    assert set(parts) == {"mse/a", "mse/b", "mse_ensemble/a", "mse_ensemble/b"}
    with pytest.raises(ValueError, match="no predicted field"):
        total_loss({"c": outs["c"]}, {"c": targets["c"]}, loss_w, field_w)


def test_gaussian_crps_is_finite_for_zero_spread():
    crps = gaussian_crps(torch.zeros(2), torch.zeros(2), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(crps).all()
    assert float(crps[1]) == pytest.approx(1.0, rel=1e-3)  # CRPS of a point forecast is |y - mu|
    assert math.isfinite(float(stats_loss(EnsembleOutput.from_members(torch.zeros(2, 3, 1)), torch.zeros(2, 1))))
