"""The package's single pint registry, CF/UDUNITS-aware.

The plain pint registry cannot parse CF strings such as ``"m s-1"``; cf-xarray's registry can.
Everything in the package converts units through the helpers here, so there is one registry.
"""

from __future__ import annotations

from functools import lru_cache

import logging

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

__all__ = ["ureg", "parse_units", "conversion", "convert", "check_convertible", "format_udunits"]


@lru_cache(maxsize=256)
def parse_units(text: str, *, what: str = "units") -> pint.Unit:
    """Parse a CF/UDUNITS unit string; ``what`` names the field or key for the error message."""
    if not isinstance(text, str):
        raise UnitError(f"{what}: units must be a string, got {text!r}")
    try:
        return ureg.parse_units(text.strip() or "1")
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


def format_udunits(text: str) -> str:
    """Normalise a unit string to the UDUNITS spelling CF files use (e.g. ``"m s-1"``)."""
    unit = parse_units(text)
    formatted = f"{unit:cf}"
    return formatted or "1"

