"""The counterfactual response's statistics (analysis/counterfactual.py) against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.analysis.counterfactual import block_means, response_statistics
from atmorep_coupler.errors import DataError


def test_batch_means_standard_error_equals_a_hand_computation():
    """90 days of 6-hourly zonal means; the response (4 K plus red noise) and its SE by 10-day batch means
    equal numpy's: mean of the difference, std(ddof=1) of the nine block means over 3."""
    rng = np.random.default_rng(0)
    times = np.datetime64("2001-03-16T06") + np.arange(360) * np.timedelta64(6, "h")
    lat = np.linspace(80, -80, 9)
    noise = np.zeros((360, 2, 9))
    for t in range(1, 360):  # AR(1) with a few days' memory
        noise[t] = 0.9 * noise[t - 1] + rng.normal(0, 0.5, (2, 9))
    control = 250.0 + rng.normal(0, 0.1, (360, 2, 9))
    warmed = control + 4.0 + noise
    stats = response_statistics(control, warmed, lat, times, block_days=10.0)
    difference = warmed - control
    blocks = difference.reshape(9, 40, 2, 9).mean(axis=1)
    np.testing.assert_allclose(block_means(difference, times, 10.0), blocks, rtol=1e-12)
    np.testing.assert_allclose(stats["zonal"], difference.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["zonal_se"], blocks.std(axis=0, ddof=1) / 3.0, rtol=1e-12)
    w = np.cos(np.deg2rad(lat))
    global_blocks = (blocks * w).sum(-1) / w.sum()
    np.testing.assert_allclose(stats["mean"], (difference.mean(0) * w).sum(-1) / w.sum(), rtol=1e-12)
    np.testing.assert_allclose(stats["mean_se"], global_blocks.std(axis=0, ddof=1) / 3.0, rtol=1e-12)
    assert stats["blocks"] == 9 and np.all(np.abs(stats["mean"] - 4.0) < 4 * stats["mean_se"])
    # with red noise, the naive SE of independent samples is far too small; the batch-means SE is not
    naive = difference.std(axis=0, ddof=1).mean() / np.sqrt(360)
    assert stats["zonal_se"].mean() > 2 * naive
    with pytest.raises(DataError, match="at least two blocks"):
        block_means(difference[:60], times[:60], 10.0)
