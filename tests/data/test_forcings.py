"""Slow-forcing formulas against closed forms and known astronomical values."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from atmorep_coupler.data import forcings as f

S0 = f.SOLAR_CONSTANT


def test_declination_at_solstices_and_equinoxes():
    doy = np.arange(0.0, 365.0, 0.25)
    delta = np.rad2deg(f.solar_declination(doy))
    assert delta.max() == pytest.approx(23.44, abs=1e-3) and delta.min() == pytest.approx(-23.44, abs=1e-3)
    assert abs(doy[delta.argmax()] - 171) <= 2  # 21 June is day 171 (0-based)
    assert abs(doy[delta.argmin()] - 354) <= 2  # 21 December
    assert abs(np.rad2deg(f.solar_declination(78.5))) < 1.0  # ~20 March
    assert abs(np.rad2deg(f.solar_declination(264.5))) < 1.0  # ~22 September


def test_insolation_closed_forms():
    # Equator at an equinox: Q = S0/pi * (d/d)^2 (sun overhead at noon, 12 h day).
    doy = 78.5
    expect = S0 / np.pi * f.earth_sun_distance_factor(doy) * np.cos(f.solar_declination(doy))
    assert f.toa_insolation(0.0, doy) == pytest.approx(expect, rel=1e-12)
    # North Pole in polar day: h0 = pi, Q = S0 (d/d)^2 sin(delta); South Pole in polar night: 0.
    doy = 171.0
    assert f.toa_insolation(90.0, doy) == pytest.approx(
        S0 * f.earth_sun_distance_factor(doy) * np.sin(f.solar_declination(doy)), rel=1e-9
    )
    assert f.toa_insolation(-90.0, doy) == 0.0
    assert f.toa_insolation(-75.0, doy) == 0.0
    # Around 524 W m-2 at the pole in June, the highest daily mean anywhere (Hartmann 2016, fig. 2.6).
    lat = np.linspace(-90, 90, 181)
    q = f.toa_insolation(lat, doy)
    assert 500 < q.max() < 540 and lat[q.argmax()] == 90.0


def test_global_annual_mean_insolation_is_s0_over_4():
    lat = np.linspace(-89.9, 89.9, 900)
    doy = np.arange(0.0, 365.2425, 0.5)
    q = f.toa_insolation(lat[:, None], doy[None, :], year_length_days=365.2425)
    weights = np.cos(np.deg2rad(lat))
    mean = (q.mean(axis=1) * weights).sum() / weights.sum()
    assert mean == pytest.approx(S0 / 4, rel=2e-3)


def test_warming_ramp_and_co2():
    sc = f.ClimateScenario(warming_rate_K_per_year=3.0)
    year = sc.year_length_days
    assert f.warming(-50.0, sc) == 0.0  # no ramp during spin-up
    assert f.warming(year, sc) == pytest.approx(3.0)
    assert f.co2_equivalent(0.0, sc) == pytest.approx(280.0)
    assert f.co2_equivalent(year, sc) == pytest.approx(560.0)  # +S = one doubling
    assert f.co2_equivalent(2 * year, sc) == pytest.approx(1120.0)
    counterfactual = f.ClimateScenario(warming_rate_K_per_year=3.0, warming_offset_K=4.0)
    assert f.warming(year, counterfactual) == pytest.approx(7.0)
    assert f.co2_equivalent(0.0, counterfactual) == pytest.approx(280.0 * 2 ** (4 / 3))


def test_equilibrium_temperature_is_held_suarez_at_the_equinox():
    """With the heating centred on the equator (equinox, no warming), eq. (3) of Held & Suarez."""
    sc = f.ClimateScenario(epoch=dt.datetime(2000, 1, 1), warming_rate_K_per_year=0.0)
    days = 365.2425 - 284.0 - 1.0  # 0-based day of year where Cooper's sin(2 pi (284 + n) / Y) = 0
    assert abs(f.heating_latitude(days, sc)) < 1e-12
    lat = np.deg2rad(np.linspace(-90, 90, 37))[:, None]
    p = np.array([1.0, 0.85, 0.5, 0.2, 0.05])[None, :]
    ref = np.maximum(
        200.0, (315.0 - 60.0 * np.sin(lat) ** 2 - 10.0 * np.log(p) * np.cos(lat) ** 2) * p ** (2 / 7)
    )
    np.testing.assert_allclose(f.equilibrium_temperature(lat, p, days, sc), ref, rtol=1e-6)


def test_heating_follows_the_sun_and_warming_shifts_the_sst():
    sc = f.ClimateScenario(epoch=dt.datetime(2000, 1, 1))
    lat = np.linspace(-90, 90, 721)
    june, december = 171.0, 354.0
    assert lat[np.argmax(f.surface_equilibrium_temperature(lat, june, sc))] == pytest.approx(23.4, abs=0.3)
    assert lat[np.argmax(f.surface_equilibrium_temperature(lat, december, sc))] == pytest.approx(
        -23.4, abs=0.3
    )
    next_june = june + sc.year_length_days
    shift = f.surface_equilibrium_temperature(lat, next_june, sc) - f.surface_equilibrium_temperature(
        lat, june, sc
    )
    warm = shift[f.surface_equilibrium_temperature(lat, june, sc) > 200.5]
    np.testing.assert_allclose(warm, sc.warming_rate_K_per_year, rtol=1e-9)
    plus4 = f.ClimateScenario(epoch=dt.datetime(2000, 1, 1), warming_offset_K=4.0)
    np.testing.assert_allclose(
        f.surface_equilibrium_temperature(0.0, june, plus4)
        - f.surface_equilibrium_temperature(0.0, june, sc),
        4.0,
    )


def test_seasonal_phase_and_days_since_epoch():
    sc = f.ClimateScenario(epoch=dt.datetime(2000, 3, 1))
    times = np.array(["2000-03-01T00", "2000-03-02T12", "2001-03-01T00"], dtype="datetime64[ns]")
    days = f.days_since_epoch(times, sc.epoch)
    np.testing.assert_allclose(days, [0.0, 1.5, 365.0])
    np.testing.assert_allclose(f.seasonal_phase(days[:2], sc), [60.0, 61.5])  # 2000 is a leap year
