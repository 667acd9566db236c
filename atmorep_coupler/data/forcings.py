"""Slow climate drivers as pure, vectorised formulas: the single definition used by the Held–Suarez
model (:mod:`.held_suarez`), the default-data writer (:mod:`.default`) and the forcing component.

Time is measured in days since the scenario's ``epoch`` (negative during spin-up). The seasonal
phase comes from a fixed year length, so the cycle is exactly periodic. The dynamics have **no
diurnal cycle**: the Held–Suarez forcing is a relaxation to an equilibrium temperature, so the
insolation provided here is the *daily mean* and only a diagnostic proxy.

Functions that also run inside JAX take ``xp`` (``numpy`` or ``jax.numpy``); everything is
elementwise, so arrays of any shape broadcast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import ModuleType

import numpy as np

__all__ = [
    "ClimateScenario",
    "HeldSuarezParameters",
    "co2_equivalent",
    "days_since_epoch",
    "earth_sun_distance_factor",
    "equilibrium_temperature",
    "heating_latitude",
    "seasonal_phase",
    "solar_declination",
    "surface_equilibrium_temperature",
    "toa_insolation",
    "warming",
    "warming_from_co2",
]

OBLIQUITY_DEG = 23.44
SOLAR_CONSTANT = 1361.0  # W m-2, Kopp & Lean (2011)


@dataclass(frozen=True)
class ClimateScenario:
    """The slow drivers: the seasonal cycle and a greenhouse-like warming ramp.

    ``epoch`` is time zero of the forcing clock (the ramp starts there and the first output time of
    the default data is there). A counterfactual run is just another scenario, e.g.
    ``ClimateScenario(warming_offset_K=4.0)`` for +4 K.
    """

    epoch: dt.datetime = dt.datetime(2000, 1, 1)
    year_length_days: float = 365.2425
    #: Surface equilibrium-temperature ramp. Fast on purpose (1 K per year): the default record is a
    #: year or two long and the trend must be visible in it.
    warming_rate_K_per_year: float = 1.0
    warming_offset_K: float = 0.0
    #: Equilibrium warming per CO2 doubling, to express the ramp as a CO2-equivalent concentration.
    climate_sensitivity_K: float = 3.0
    co2_reference_ppm: float = 280.0
    #: Fraction of the solar declination that the latitude of maximum heating follows.
    heating_shift: float = 1.0


@dataclass(frozen=True)
class HeldSuarezParameters:
    """Constants of Held & Suarez (1994, BAMS 75, 1825), their eqs. (1)-(4)."""

    t_surface_K: float = 315.0
    """T0: equatorial surface equilibrium temperature (K)."""
    delta_t_y_K: float = 60.0
    """Equator-to-pole difference of the equilibrium temperature (K)."""
    delta_theta_z_K: float = 10.0
    """Static stability parameter (K)."""
    t_min_K: float = 200.0
    """Stratospheric floor of the equilibrium temperature (K)."""
    sigma_b: float = 0.7
    """Top of the boundary layer (sigma)."""
    k_f_per_day: float = 1.0
    """Rayleigh friction at the surface (per day)."""
    k_a_per_day: float = 1.0 / 40.0
    """Free-atmosphere thermal relaxation rate (per day)."""
    k_s_per_day: float = 1.0 / 4.0
    """Surface thermal relaxation rate at the equator (per day)."""
    kappa: float = 2.0 / 7.0
    """R / cp."""


def days_since_epoch(times, epoch: dt.datetime) -> np.ndarray:
    """Days (float64) from ``epoch`` to each ``datetime64`` in ``times``."""
    delta = np.asarray(times, dtype="datetime64[ns]") - np.datetime64(epoch, "ns")
    return delta.astype(np.float64) / 86400e9


def _epoch_day_of_year(epoch: dt.datetime) -> float:
    start = dt.datetime(epoch.year, 1, 1, tzinfo=epoch.tzinfo)
    return (epoch - start).total_seconds() / 86400.0


def seasonal_phase(days, scenario: ClimateScenario, xp: ModuleType = np):
    """Day of year in [0, year_length) (0 = 1 January 00 UTC) of ``days`` since the epoch."""
    return xp.mod(days + _epoch_day_of_year(scenario.epoch), scenario.year_length_days)


def solar_declination(day_of_year, year_length_days: float = 365.2425, xp: ModuleType = np):
    """Solar declination (radians), Cooper (1969): δ = ε sin(2π (284 + n) / Y), n = day number
    (1 on 1 January), ε = 23.44°. Accurate to about 1° -- enough for a seasonal-cycle driver."""
    n = day_of_year + 1.0
    return np.deg2rad(OBLIQUITY_DEG) * xp.sin(2.0 * np.pi * (284.0 + n) / year_length_days)


def earth_sun_distance_factor(day_of_year, year_length_days: float = 365.2425, xp: ModuleType = np):
    """(d̄/d)², the inverse-square orbital factor, Duffie & Beckman (2013, eq. 1.4.1a):
    1 + 0.033 cos(2π n / Y). Its mean over a year is exactly 1."""
    n = day_of_year + 1.0
    return 1.0 + 0.033 * xp.cos(2.0 * np.pi * n / year_length_days)


def toa_insolation(
    lat_deg,
    day_of_year,
    *,
    year_length_days: float = 365.2425,
    solar_constant: float = SOLAR_CONSTANT,
    xp: ModuleType = np,
):
    """Daily-mean top-of-atmosphere insolation (W m-2), Hartmann (2016, Global Physical
    Climatology, eq. 2.15): Q = S0/π (d̄/d)² (h0 sinφ sinδ + cosφ cosδ sin h0),
    cos h0 = -tanφ tanδ (h0 = π in polar day, 0 in polar night)."""
    phi = xp.deg2rad(lat_deg)
    delta = solar_declination(day_of_year, year_length_days, xp)
    cos_h0 = xp.clip(-xp.tan(phi) * xp.tan(delta), -1.0, 1.0)
    h0 = xp.arccos(cos_h0)
    daily = h0 * xp.sin(phi) * xp.sin(delta) + xp.cos(phi) * xp.cos(delta) * xp.sin(h0)
    q = solar_constant / np.pi * earth_sun_distance_factor(day_of_year, year_length_days, xp) * daily
    return xp.maximum(q, 0.0)


def heating_latitude(days, scenario: ClimateScenario, xp: ModuleType = np):
    """Latitude of maximum heating (radians): ``heating_shift`` times the solar declination."""
    phase = seasonal_phase(days, scenario, xp)
    return scenario.heating_shift * solar_declination(phase, scenario.year_length_days, xp)


def warming(days, scenario: ClimateScenario, xp: ModuleType = np):
    """Shift of the surface equilibrium temperature (K): a linear ramp from the epoch (none before
    it, i.e. during spin-up) plus the scenario's constant offset."""
    years = xp.maximum(days, 0.0) / scenario.year_length_days
    return scenario.warming_offset_K + scenario.warming_rate_K_per_year * years


def co2_equivalent(days, scenario: ClimateScenario, xp: ModuleType = np):
    """CO2-equivalent concentration (ppm) consistent with :func:`warming` under the logarithmic
    forcing law ΔT = S log2(C / C0) (Myhre et al. 1998 forcing, sensitivity S per doubling):
    C = C0 · 2^(ΔT / S)."""
    return scenario.co2_reference_ppm * 2.0 ** (warming(days, scenario, xp) / scenario.climate_sensitivity_K)


def warming_from_co2(co2_ppm, scenario: ClimateScenario, xp: ModuleType = np):
    """The surface warming (K) that a CO2-equivalent concentration stands for: the inverse of
    :func:`co2_equivalent`, ΔT = S log2(C / C0). Lets a model driven by a CO2 series (e.g. a coupled
    scenario component) apply the same equilibrium-temperature shift as the ramp itself."""
    return scenario.climate_sensitivity_K * xp.log2(co2_ppm / scenario.co2_reference_ppm)


def equilibrium_temperature(
    lat_rad,
    p_over_p0,
    days,
    scenario: ClimateScenario,
    hs: HeldSuarezParameters = HeldSuarezParameters(),
    xp: ModuleType = np,
    warming_K=None,
):
    """Held–Suarez radiative-equilibrium temperature (K), their eq. (3), made time dependent:

    Teq = max(Tmin, [T0 + ΔT(t) - ΔTy sin²(φ - φh(t)) - Δθz ln(p/p0) cos²(φ - φh(t))] (p/p0)^κ)

    with φh the latitude of maximum heating (:func:`heating_latitude`, the seasonal cycle) and
    ΔT the warming ramp (:func:`warming`), or ``warming_K`` when given (a warming imported from
    elsewhere, e.g. :func:`warming_from_co2` of a coupled CO2 series)."""
    shifted = lat_rad - heating_latitude(days, scenario, xp)
    bracket = (
        hs.t_surface_K
        + (warming(days, scenario, xp) if warming_K is None else warming_K)
        - hs.delta_t_y_K * xp.sin(shifted) ** 2
        - hs.delta_theta_z_K * xp.log(p_over_p0) * xp.cos(shifted) ** 2
    )
    return xp.maximum(hs.t_min_K, bracket * p_over_p0**hs.kappa)


def surface_equilibrium_temperature(
    lat_deg, days, scenario: ClimateScenario, hs: HeldSuarezParameters = HeldSuarezParameters()
):
    """The SST proxy (K): :func:`equilibrium_temperature` at p = p0,
    T0 + ΔT(t) - ΔTy sin²(φ - φh(t)), floored at Tmin."""
    return equilibrium_temperature(np.deg2rad(lat_deg), 1.0, days, scenario, hs)
