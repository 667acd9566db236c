"""ISO 8601 durations (``PT6H``, ``P1D``) used by every config kind."""

from __future__ import annotations

import datetime as _dt
import re

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str | int | float) -> _dt.timedelta:
    """Parse an ISO 8601 duration without years or months (their length depends on the calendar).

    Plain numbers are taken as seconds.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _dt.timedelta(seconds=float(text))
    match = _DURATION.match(str(text).strip())
    if not match or str(text).strip() in ("P", "PT"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as 'PT6H' or 'P1D' (no years or months)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return _dt.timedelta(**parts)


def format_duration(delta: _dt.timedelta) -> str:
    """Format a timedelta as the shortest ISO 8601 duration (``PT6H``, ``P1D``)."""
    seconds = int(round(delta.total_seconds()))
    if seconds == 0:
        return "PT0S"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    return out + ("T" + clock if clock else "")
