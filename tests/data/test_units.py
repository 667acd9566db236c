"""units.py: ECMWF unit spellings read and respelled for UDUNITS (checked against the real UDUNITS-2
where gimli.units is installed), and plausible ranges converted to a field's units, accumulations of a
flux included, against hand arithmetic. (That a field without a range is logged and left unchecked by
the component: tests/e2e/test_era5_layouts.py.)"""

from __future__ import annotations

import datetime as dt

import pytest

from atmorep_coupler.errors import UnitError
from atmorep_coupler.units import accumulation_period, conversion, plausible_range, udunits

ECMWF = {"m**2 s**-2": "m2 s-2", "kg kg**-1": "kg kg-1", "J m**-2": "J m-2", "m s**-1": "m s-1", "Pa s**-1": "Pa s-1",
         "(0 - 1)": "1", "K": "K", "W m-2": "W m-2", "ppm": "ppm", "degC": "degC"}


@pytest.mark.parametrize("ecmwf, cf", ECMWF.items())
def test_ecmwf_spellings_become_udunits_with_the_same_meaning(ecmwf, cf):
    assert udunits(ecmwf) == cf
    assert conversion(ecmwf, cf) == (1.0, 0.0)  # the same unit, spelled otherwise
    gimli = pytest.importorskip("gimli.units", reason="gimli.units (UDUNITS-2) is not installed").units
    gimli.Unit(cf)  # real UDUNITS-2 parses it


def test_unparsable_units_are_refused():
    with pytest.raises(UnitError, match="cannot parse units 'Kelvin degrees'"):
        udunits("Kelvin degrees")


def test_ranges_are_converted_to_the_field_units():
    assert plausible_range("sea_surface_temperature", "degC")[0] == pytest.approx((200 - 273.15, 350 - 273.15))
    assert plausible_range("specific_humidity", "g kg**-1")[0] == pytest.approx((-1.0, 100.0))  # ERA5 has tiny negatives
    assert plausible_range("co2_equivalent", "1")[0] == pytest.approx((1e-6, 0.1))
    # an ERA5 accumulation: 0 .. 2000 W m-2 over the hour before the valid time, or WeatherBench 2's 6 h
    assert plausible_range("toa_incident_solar_radiation", "J m**-2")[0] == pytest.approx((0.0, 2000.0 * 3600))
    assert plausible_range("toa_incident_solar_radiation_6hr", "J m-2")[0] == pytest.approx((0.0, 2000.0 * 21600))
    assert plausible_range("toa_incident_solar_radiation", "MJ m-2", period=dt.timedelta(days=1))[0] == \
        pytest.approx((0.0, 2000.0 * 86400 / 1e6))
    assert accumulation_period("total_precipitation_24hr") == dt.timedelta(hours=24)


def test_no_range_says_why():
    bounds, why = plausible_range("total_precipitation", "m")
    assert bounds is None and why == "no plausible range is tabulated for 'total_precipitation'"
    bounds, why = plausible_range("toa_incident_solar_radiation", "K")
    assert bounds is None and "neither 'W m-2'" in why and "nor its accumulation or rate over time" in why
