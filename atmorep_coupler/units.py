"""The package's single pint registry, CF/UDUNITS-aware, and everything else about units.

The plain pint registry cannot parse CF strings such as ``"m s-1"``; cf-xarray's registry can.
Everything in the package converts units through the helpers here, so there is one registry.

ERA5 files (ARCO-ERA5, WeatherBench 2, CDS downloads) spell units the ECMWF way: powers with ``**``
(``"m**2 s**-2"``, ``"kg kg**-1"``, ``"J m**-2"``) and fractions as ``"(0 - 1)"``. They are read as
the units they mean, and :func:`udunits` spells them the UDUNITS way (``"m2 s-2"``, ``"kg kg-1"``,
``"J m-2"``, ``"1"``) for BMI and CF outputs, keeping the factors as written (no ``kg kg-1 -> 1``).

:func:`plausible_range` holds the ranges that catch unit mistakes in imported fields (a temperature
in degC, CO2 as a mole fraction), converted to the field's units: also when the field is the time
integral of the tabulated quantity (an ERA5 accumulation such as ``toa_incident_solar_radiation`` in
J m-2, against a flux range in W m-2) or its rate. :func:`check_data_units` and
:func:`find_implausible` apply them where data enter (training, the AtmoRep component, forcing files).
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import warnings
from functools import lru_cache

import numpy as np
import pint

# cf-xarray redefines a few pint units on purpose ('percent', 'year', 'degrees_east', ...); pint logs each
# as a WARNING, which every Ray worker would print. Quiet them while the registry is built, only.
_pint_log = logging.getLogger("pint.util")
_level = _pint_log.level
_pint_log.setLevel(logging.ERROR)
try:
    from cf_xarray.units import units as ureg
finally:
    _pint_log.setLevel(_level)

from atmorep_coupler.errors import UnitError

__all__ = [
    "ureg", "parse_units", "conversion", "convert", "check_convertible", "udunits", "same_units", "plausible_range",
    "accumulation_period", "find_implausible", "check_data_units", "PLAUSIBLE_RANGES", "CF_CANONICAL_UNITS",
]

#: Canonical units of the CF standard names the package meets (CF standard name table). A variable with
#: one of these ``standard_name`` attributes must have units convertible to them.
CF_CANONICAL_UNITS: dict[str, str] = {
    "air_temperature": "K",
    "sea_surface_temperature": "K",
    "surface_temperature": "K",
    "eastward_wind": "m s-1",
    "northward_wind": "m s-1",
    "geopotential": "m2 s-2",
    "geopotential_height": "m",
    "atmosphere_relative_vorticity": "s-1",
    "divergence_of_wind": "s-1",
    "lagrangian_tendency_of_air_pressure": "Pa s-1",
    "specific_humidity": "1",
    "relative_humidity": "1",
    "surface_air_pressure": "Pa",
    "air_pressure_at_mean_sea_level": "Pa",
    "toa_incoming_shortwave_flux": "W m-2",
    "integral_wrt_time_of_toa_incoming_shortwave_flux": "J m-2",
    "mole_fraction_of_carbon_dioxide_in_air": "1",
    "sea_ice_area_fraction": "1",
    "land_binary_mask": "1",
    "sea_binary_mask": "1",
}

#: ECMWF spellings that are not unit expressions -> what they mean (CF/UDUNITS).
ECMWF_SPELLINGS: dict[str, str] = {"(0 - 1)": "1", "~": "1", "m of water equivalent": "m"}
_POWER = re.compile(r"\*\*\s*(?=[-+]?\d)")  # "m**2 s**-2": Python/ECMWF powers; UDUNITS writes "m2 s-2"


def udunits(text: str) -> str:
    """The UDUNITS spelling of a unit string (``"m**2 s**-2"`` -> ``"m2 s-2"``, ``"(0 - 1)"`` -> ``"1"``);
    other strings come back stripped but otherwise as written. Raises :class:`UnitError` if unparsable."""
    if not isinstance(text, str):
        raise UnitError(f"units must be a string, got {text!r}")
    spelled = ECMWF_SPELLINGS.get(text.strip(), _POWER.sub("", text.strip())) or "1"
    parse_units(spelled)
    return spelled


@lru_cache(maxsize=256)
def parse_units(text: str, *, what: str = "units") -> pint.Unit:
    """Parse a CF/UDUNITS unit string (ECMWF spellings included); ``what`` names the field or key
    for the error message."""
    if not isinstance(text, str):
        raise UnitError(f"{what}: units must be a string, got {text!r}")
    try:
        return ureg.parse_units(ECMWF_SPELLINGS.get(text.strip(), text.strip()) or "1")
    except Exception as exc:  # pint raises several unrelated exception types
        raise UnitError(f"{what}: cannot parse units {text!r} ({exc})") from None


@lru_cache(maxsize=256)
def conversion(src: str, dst: str, *, what: str = "field") -> tuple[float, float]:
    """Return ``(scale, offset)`` with ``value_dst = value_src * scale + offset``.

    Unit conversions between CF units are affine (K <-> degC has an offset), so one scale and one
    offset per pair, computed once, convert whole arrays without going through pint per call.
    """
    u_src = parse_units(src, what=what)
    u_dst = parse_units(dst, what=what)
    try:
        offset = ureg.Quantity(0.0, u_src).to(u_dst).magnitude
    except pint.DimensionalityError:
        raise UnitError(
            f"{what}: cannot convert {src!r} to {dst!r} (dimensions "
            f"{ureg.get_dimensionality(u_src)} and {ureg.get_dimensionality(u_dst)} differ)"
        ) from None
    # The scale from the root-unit factors is exact; a difference of two converted values is not.
    scale = ureg.get_root_units(u_src)[0] / ureg.get_root_units(u_dst)[0]
    return float(scale), float(offset)


def convert(values, src: str, dst: str, *, what: str = "field"):
    """Convert an array (numpy, torch or xarray) from units ``src`` to ``dst``."""
    scale, offset = conversion(src, dst, what=what)
    if scale == 1.0 and offset == 0.0:
        return values
    return values * scale + offset if offset else values * scale


def check_convertible(src: str, dst: str, *, what: str = "field") -> None:
    """Raise :class:`UnitError` unless ``src`` converts to ``dst``."""
    conversion(src, dst, what=what)


# ------------------------------------------------------------------------------ plausible ranges
#: Plausible values of the ERA5 variables (and the default data's ``co2_equivalent``) in reference units:
#: wide enough for any real state, narrow enough to catch a unit mistake. Fluxes are instantaneous;
#: accumulations of them are checked against ``range x accumulation period`` (:func:`plausible_range`).
PLAUSIBLE_RANGES: dict[str, tuple[tuple[float, float], str]] = {
    "temperature": ((100.0, 400.0), "K"),
    "2m_temperature": ((150.0, 360.0), "K"),
    "2m_dewpoint_temperature": ((120.0, 350.0), "K"),
    "skin_temperature": ((150.0, 370.0), "K"),
    "sea_surface_temperature": ((200.0, 350.0), "K"),
    "u_component_of_wind": ((-300.0, 300.0), "m s-1"),
    "v_component_of_wind": ((-300.0, 300.0), "m s-1"),
    "10m_u_component_of_wind": ((-150.0, 150.0), "m s-1"),
    "10m_v_component_of_wind": ((-150.0, 150.0), "m s-1"),
    "vertical_velocity": ((-100.0, 100.0), "Pa s-1"),
    "geopotential": ((-2.0e4, 5.0e5), "m2 s-2"),
    "geopotential_at_surface": ((-2.0e4, 1.0e5), "m2 s-2"),
    "surface_pressure": ((3.0e4, 1.2e5), "Pa"),
    "mean_sea_level_pressure": ((8.0e4, 1.2e5), "Pa"),
    "vorticity": ((-1.0e-2, 1.0e-2), "s-1"),
    "divergence": ((-1.0e-2, 1.0e-2), "s-1"),
    "specific_humidity": ((-1.0e-3, 0.1), "kg kg-1"),  # ERA5 has tiny negative values
    "relative_humidity": ((0.0, 150.0), "%"),
    "total_column_water_vapour": ((0.0, 150.0), "kg m-2"),
    "sea_ice_cover": ((0.0, 1.0), "1"),
    "land_sea_mask": ((0.0, 1.0), "1"),
    "toa_incident_solar_radiation": ((0.0, 2000.0), "W m-2"),
    "co2_equivalent": ((1.0, 1.0e5), "ppm"),
}
#: CF standard names -> the :data:`PLAUSIBLE_RANGES` entry of a variable stored under another name.
_RANGE_OF_STANDARD_NAME = {
    "air_temperature": "temperature",
    "sea_surface_temperature": "sea_surface_temperature",
    "eastward_wind": "u_component_of_wind",
    "northward_wind": "v_component_of_wind",
    "geopotential": "geopotential",
    "surface_air_pressure": "surface_pressure",
    "atmosphere_relative_vorticity": "vorticity",
    "divergence_of_wind": "divergence",
    "specific_humidity": "specific_humidity",
    "toa_incoming_shortwave_flux": "toa_incident_solar_radiation",
}
_ACCUMULATION_SUFFIX = re.compile(r"_(\d+)hr$")  # WeatherBench 2: total_precipitation_6hr, ..._24hr
ERA5_ACCUMULATION = _dt.timedelta(hours=1)
"""ERA5's accumulated fields (e.g. ``toa_incident_solar_radiation`` in J m-2) sum over the hour
before the valid time, also in 6-hourly stores that sample them every 6 hours."""


def accumulation_period(variable: str) -> _dt.timedelta:
    """The period an accumulated ERA5 variable sums over: ``N`` hours for WeatherBench 2's ``<name>_Nhr``
    variables, else :data:`ERA5_ACCUMULATION` (one hour)."""
    match = _ACCUMULATION_SUFFIX.search(variable)
    return _dt.timedelta(hours=int(match[1])) if match else ERA5_ACCUMULATION


def plausible_range(
    variable: str, units: str, *, period: _dt.timedelta | None = None, standard_name: str | None = None
) -> tuple[tuple[float, float] | None, str]:
    """``((low, high), how)`` in ``units`` for ``variable``, or ``(None, why not)``.

    The tabulated range is converted to ``units``; units that are the tabulated ones times a time (an
    accumulation: J m-2 of a W m-2 flux) scale it by ``period`` (default :func:`accumulation_period`),
    units that are the tabulated ones per time (a rate) divide by it. Any other units, or a variable
    without a tabulated range, return None and the reason, so the caller can log that no check applies.
    A variable stored under another name is found by its CF ``standard_name``.
    """
    base = _ACCUMULATION_SUFFIX.sub("", variable)
    known = PLAUSIBLE_RANGES.get(base) or PLAUSIBLE_RANGES.get(_RANGE_OF_STANDARD_NAME.get(standard_name or "", ""))
    if known is None:
        return None, f"no plausible range is tabulated for {variable!r}"
    (low, high), reference = known
    period = accumulation_period(variable) if period is None else period
    seconds = period.total_seconds()
    unit, ref = parse_units(units, what=variable), parse_units(reference)
    dims = ureg.get_dimensionality(unit)
    candidates = (
        (ref, 1.0, f"{low:g}..{high:g} {reference}"),
        (ref * ureg.second, seconds, f"{low:g}..{high:g} {reference} accumulated over {seconds:g} s"),
        (ref / ureg.second, 1.0 / seconds, f"{low:g}..{high:g} {reference} averaged over {seconds:g} s"),
    )
    for source, factor, how in candidates:
        if ureg.get_dimensionality(source) == dims:
            values = ureg.Quantity(np.array([low, high], dtype=np.float64) * factor, source).to(unit).magnitude
            return (float(np.min(values)), float(np.max(values))), how
    return None, (f"units {units!r} of {variable!r} are neither {reference!r} (the tabulated range "
                  f"{low:g}..{high:g}) nor its accumulation or rate over time")


def same_units(a: str, b: str) -> bool:
    """Whether two unit strings mean the same unit (``"m s-1"`` and ``"m/s"``), without an offset."""
    try:
        return conversion(a, b) == (1.0, 0.0)
    except UnitError:
        return False


def check_data_units(text: object, *, what: str, standard_name: object = None, expected: str | None = None) -> str:
    """The ``units`` attribute ``text`` of data ``what``, checked where the data enter: present, a
    CF/UDUNITS unit, convertible to the canonical units of its CF ``standard_name`` (when known) and to
    ``expected`` (what the config or the statistics want). :class:`UnitError` says which and the fix."""
    if text is None:
        raise UnitError(f"{what}: has no CF 'units' attribute; add one (e.g. 'K')")
    unit = parse_units(text, what=what)
    canonical = CF_CANONICAL_UNITS.get(standard_name) if isinstance(standard_name, str) else None
    if canonical is not None and ureg.get_dimensionality(unit) != ureg.get_dimensionality(parse_units(canonical)):
        raise UnitError(
            f"{what}: units {text!r} do not fit its CF standard_name {standard_name!r} (canonical units "
            f"{canonical!r}); correct the 'units' attribute (or the standard_name)"
        )
    if expected is not None:
        try:
            conversion(text, expected, what=what)
        except UnitError as exc:
            raise UnitError(f"{exc}; correct the 'units' attribute, or give units the data can be converted to") from None
    return text


def find_implausible(values: np.ndarray, variable: str, units: str, *,
                     standard_name: str | None = None) -> tuple[int, float, tuple[float, float]] | None:
    """``(index along the first axis, value, range)`` of the first value of ``values`` (in ``units``) outside
    :func:`plausible_range`, or None. NaN is not judged here. One vectorised pass when all is well."""
    bounds = plausible_range(variable, units, standard_name=standard_name)[0]
    if bounds is None or values.size == 0:
        return None
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window has no minimum: nothing to judge
        low, high = np.nanmin(values), np.nanmax(values)
        if not (low < bounds[0] or high > bounds[1]):
            return None
        bad = (values < bounds[0]) | (values > bounds[1])
    first = np.argwhere(bad)[0]
    return int(first[0]) if values.ndim else 0, float(values[tuple(first)]), bounds
