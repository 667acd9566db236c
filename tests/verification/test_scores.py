"""The scorer against a plain xarray implementation of the WeatherBench 2 formulas written here, and
scoringrules' fair CRPS; a persistence forecast against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.verification import ForecastScores, Scorecard, latitude_weights

sr = pytest.importorskip("scoringrules")

LAT = 90.0 - (np.arange(12) + 0.5) * 15.0  # 12 rows of 15 degrees, north first
S, M, L, NLON = 7, 5, 2, 24


def wb2_weights(lat: np.ndarray) -> xr.DataArray:
    """WeatherBench 2: cell bounds midway between latitudes and at +-90, w ~ sin(upper) - sin(lower), mean 1."""
    lat = xr.DataArray(lat, dims="latitude")
    upper = np.deg2rad(np.minimum(90.0, lat + 7.5))
    lower = np.deg2rad(np.maximum(-90.0, lat - 7.5))
    w = np.sin(upper) - np.sin(lower)
    return w / w.mean()


def cube(values: np.ndarray, *lead) -> xr.DataArray:
    dims = (*lead, "init", "level", "latitude", "longitude")
    return xr.DataArray(values, dims=dims[-values.ndim:])


def case(seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(S, L, LAT.size, NLON)) + 3 * np.cos(np.deg2rad(LAT))[:, None]
    clim = 3 * np.cos(np.deg2rad(LAT))[:, None] + rng.normal(scale=0.2, size=(S, L, LAT.size, NLON))
    members = truth[:, None] + rng.normal(scale=0.7, size=(S, M, L, LAT.size, NLON)) + 0.2
    return truth, clim, members


def test_latitude_weights_are_wb2s():
    np.testing.assert_allclose(latitude_weights(LAT), wb2_weights(LAT).values, rtol=1e-12)
    gaussian_like = np.array([80.0, 45.0, 10.0, -20.0, -60.0])  # uneven rows: bounds midway, poles at +-90
    bounds = np.deg2rad([90.0, 62.5, 27.5, -5.0, -40.0, -90.0])
    area = np.sin(bounds[:-1]) - np.sin(bounds[1:])
    np.testing.assert_allclose(latitude_weights(gaussian_like), area / area.mean(), rtol=1e-12)


def test_ensemble_scores_match_wb2_formulas_and_scoringrules():
    truth, clim, members = case()
    scores = ForecastScores(leads=1, levels=L, latitudes=LAT, ensemble_size=M)
    scores.add(0, members, truth, clim)
    got = scores.result()

    w = wb2_weights(LAT)
    o, c = cube(truth), cube(clim)
    ens = xr.DataArray(members, dims=("init", "member", "level", "latitude", "longitude"))
    f = ens.mean("member")
    area_mean = lambda x: (x * w).mean(("latitude", "longitude"))  # noqa: E731
    rmse = np.sqrt(area_mean((f - o) ** 2).mean("init"))
    bias = area_mean(f - o).mean("init")
    fa, oa = f - c, o - c
    acc = (area_mean(fa * oa) / np.sqrt(area_mean(fa**2) * area_mean(oa**2))).mean("init")
    crps = xr.DataArray(sr.crps_ensemble(truth, np.moveaxis(members, 1, -1), estimator="fair"), dims=o.dims)
    spread = np.sqrt(area_mean(ens.var("member", ddof=1)).mean("init"))
    np.testing.assert_allclose(got["rmse"][0], rmse.values, rtol=1e-10)
    np.testing.assert_allclose(got["bias"][0], bias.values, rtol=1e-10)
    np.testing.assert_allclose(got["acc"][0], acc.values, rtol=1e-10)
    np.testing.assert_allclose(got["crps"][0], area_mean(crps).mean("init").values, rtol=1e-6)
    np.testing.assert_allclose(got["spread"][0], spread.values, rtol=1e-10)
    np.testing.assert_allclose(got["spread_skill"][0], np.sqrt((M + 1) / M) * spread.values / rmse.values, rtol=1e-10)


def test_start_dates_may_arrive_in_parts():
    truth, clim, members = case(1)
    whole = ForecastScores(1, L, LAT, M)
    whole.add(0, members, truth, clim)
    parts = ForecastScores(1, L, LAT, M)
    parts.add(0, members[:3], truth[:3], clim[:3])
    parts.add(0, members[3:], truth[3:], clim[3:])
    for metric, value in whole.result().items():
        np.testing.assert_allclose(parts.result()[metric], value, rtol=1e-12)


def test_persistence_through_the_scorecard_equals_a_hand_computation():
    rng = np.random.default_rng(2)
    series = np.cumsum(rng.normal(size=(S, 4, LAT.size, NLON)), axis=1)  # [start, time 0..3, lat, lon]
    clim = np.zeros((S, LAT.size, NLON))
    card = Scorecard({"t": ["surface"]}, {"t": "K"}, [3.0, 6.0, 9.0], LAT)
    card.add_system("persistence", "persistence")
    for lead in (1, 2, 3):
        card.add("persistence", "t", lead - 1, series[:, 0], series[:, lead], clim)
    w = np.cos(np.deg2rad(LAT))  # 15-degree rows centred off the poles: band areas are exactly prop. to cos
    for lead in (1, 2, 3):
        err = series[:, 0] - series[:, lead]
        rmse = np.sqrt(np.mean([(w[:, None] * err[s] ** 2).sum() / (w.sum() * NLON) for s in range(S)]))
        acc = np.mean([(w[:, None] * series[s, 0] * series[s, lead]).sum()
                       / np.sqrt((w[:, None] * series[s, 0] ** 2).sum() * (w[:, None] * series[s, lead] ** 2).sum())
                       for s in range(S)])
        assert card.value("persistence", "t", "surface", "rmse", 3.0 * lead) == pytest.approx(rmse, rel=1e-12)
        assert card.value("persistence", "t", "surface", "acc", 3.0 * lead) == pytest.approx(acc, rel=1e-12)
        assert card.value("persistence", "t", "surface", "bias", 3.0 * lead) == pytest.approx(
            np.mean([(w[:, None] * err[s]).sum() / (w.sum() * NLON) for s in range(S)]), abs=1e-12)


def test_climatology_has_no_acc_and_a_deterministic_system_no_crps(tmp_path):
    truth, clim, _ = case(3)
    card = Scorecard({"t": ["500hPa", "850hPa"]}, {"t": "K"}, [6.0], LAT, ["2000-01-01T00:00:00"])
    card.add_system("climatology", "climatology")
    card.add("climatology", "t", 0, clim, truth, clim)
    assert np.isnan(card.value("climatology", "t", "500hPa", "acc", 6.0))
    assert np.isnan(card.value("climatology", "t", "500hPa", "crps", 6.0))
    assert card.value("climatology", "t", "850hPa", "rmse", 6.0) > 0
    again = Scorecard.load(card.save(tmp_path / "card.json"))  # NaN travels as null
    assert again.value("climatology", "t", "850hPa", "rmse", 6.0) == card.value("climatology", "t", "850hPa", "rmse", 6.0)
    assert np.isnan(again.value("climatology", "t", "850hPa", "acc", 6.0))
    assert "| t | 850hPa | climatology |" in "\n".join(again.table("rmse"))
    assert again.table("acc")[0].startswith("| field (ACC) | level | system | 6 h |")
