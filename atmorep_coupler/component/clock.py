"""A component's clock: BMI time (float seconds since the run start) over a cftime calendar.

BMI time is a bare float without a calendar. A component keeps it as
seconds since its start; the calendar (``noleap``, ``360_day``, ...) lives here, in the native layer.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from typing import Literal, get_args

import cftime

from atmorep_coupler.config import show
from atmorep_coupler.errors import ComponentError, ConfigError

__all__ = ["Calendar", "CALENDARS", "to_cftime", "Clock", "UNBOUNDED_END"]

Calendar = Literal[
    "standard", "gregorian", "proleptic_gregorian", "julian", "noleap", "365_day", "all_leap", "366_day", "360_day"
]
CALENDARS: tuple[str, ...] = get_args(Calendar)

UNBOUNDED_END = sys.float_info.max
"""BMI end time of a component without an end: "a large number if unbounded", as the BMI specification asks."""

_ISO = re.compile(
    r"^\s*(?P<y>-?\d{1,4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<us>\d{1,6}))?)?)?\s*$"
)


def to_cftime(value: object, calendar: str, *, what: str = "date") -> cftime.datetime:
    """Convert a ``datetime``, ISO string (``2000-02-30T06:00`` is valid in ``360_day``) or cftime
    date to a cftime date in ``calendar``; an impossible date raises :class:`ConfigError`."""
    if calendar not in CALENDARS:
        raise ConfigError(f"{what}: calendar {show(calendar)} is not one of {list(CALENDARS)}")
    if isinstance(value, (cftime.datetime, _dt.datetime)):
        fields = (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    elif isinstance(value, _dt.date):
        fields = (value.year, value.month, value.day, 0, 0, 0, 0)
    else:
        match = _ISO.match(str(value))
        if not match:
            raise ConfigError(f"{what}: {show(value)} is not an ISO date such as '2000-01-01T06:00:00'")
        g = match.groupdict()
        fields = (
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"] or 0),
            int(g["mi"] or 0),
            int(g["s"] or 0),
            int((g["us"] or "0").ljust(6, "0")),
        )
    try:
        return cftime.datetime(*fields, calendar=calendar)
    except ValueError as exc:
        raise ConfigError(f"{what}: {show(value)} is not a date of the {calendar!r} calendar ({exc})") from None


class Clock:
    """Elapsed seconds since ``start`` plus the calendar to turn them into dates.

    ``elapsed`` is set by assignment (never by repeated float sums of fractions), so a clock that was
    advanced to ``t`` reads exactly ``t`` (no drift from summed float steps).
    """

    def __init__(self, start: cftime.datetime, time_step: _dt.timedelta, end: cftime.datetime | None = None) -> None:
        if time_step.total_seconds() <= 0:
            raise ConfigError(f"time_step must be positive, got {time_step}")
        self.start = start
        self.calendar = start.calendar
        self.time_step = time_step
        self.end = end
        self.elapsed = 0.0
        if end is not None and self.seconds_since_start(end) < 0:
            raise ConfigError(f"end {end.isoformat()} is before start {start.isoformat()}")

    @property
    def step_seconds(self) -> float:
        return self.time_step.total_seconds()

    @property
    def end_seconds(self) -> float:
        return UNBOUNDED_END if self.end is None else self.seconds_since_start(self.end)

    @property
    def now(self) -> cftime.datetime:
        return self.datetime_at(self.elapsed)

    def datetime_at(self, seconds: float) -> cftime.datetime:
        """The calendar date ``seconds`` after the start (resolved to microseconds)."""
        return self.start + _dt.timedelta(seconds=seconds)

    def seconds_since_start(self, when: object) -> float:
        """BMI time of a date (``datetime``, cftime date or ISO string) in this clock's calendar."""
        try:
            date = to_cftime(when, self.calendar, what="time")
        except ConfigError as exc:
            raise ComponentError(str(exc)) from None
        return (date - self.start).total_seconds()
