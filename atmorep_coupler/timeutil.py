"""ISO 8601 durations (``PT6H``, ``P1D``) used by every config kind."""

from __future__ import annotations

import datetime as _dt
import math
import re

from atmorep_coupler.errors import ConfigError

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SECONDS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}

MAX_DURATION_DAYS = 1_000_000
"""Longest duration a config may give (about 2,700 years): longer ones are typos, and far beyond what
``datetime`` and calendar arithmetic can add to a date."""


def parse_duration(text: str | int | float) -> _dt.timedelta:
    """Parse an ISO 8601 duration without years or months (their length depends on the calendar).

    Plain numbers are taken as seconds. The value is checked before it is converted: negative,
    infinite, NaN or longer than :data:`MAX_DURATION_DAYS` days is a :class:`ConfigError` (a
    ``ValueError``), never an ``OverflowError``.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text) if abs(text) < 1e300 else math.copysign(math.inf, text)
    else:
        match = _DURATION.match(str(text).strip())
        if not match or str(text).strip() in ("P", "PT"):
            raise ConfigError(f"{_short(str(text).strip())} is not an ISO 8601 duration such as 'PT6H' or 'P1D' (no years or months)")
        seconds = sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v is not None)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{_short(text)}: a duration must be a finite, non-negative number of seconds")
    if seconds > MAX_DURATION_DAYS * 86400.0:
        raise ConfigError(f"{_short(text)}: longer than the {MAX_DURATION_DAYS} days a duration may be")
    return _dt.timedelta(seconds=seconds)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_duration(delta: _dt.timedelta) -> str:
    """Format a timedelta as the shortest ISO 8601 duration (``PT6H``, ``P1D``)."""
    seconds = int(round(delta.total_seconds()))
    if seconds == 0:
        return "PT0S"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = sign + "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return out + ("T" + clock if clock else "")
