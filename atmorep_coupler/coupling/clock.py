"""The driver's clock: exact whole seconds since the run start, dates from a cftime calendar.

Coupling periods, lags, time steps and output intervals are ISO 8601 durations without years or
months, so they are calendar-independent lengths of time. The driver therefore schedules everything
in integer seconds since ``start`` (no float drift, exact ``%`` tests for window boundaries) and
turns offsets into dates of the run's calendar (``noleap``, ``360_day``, ...) only where a date is
shown or written (progress bar, CF time coordinate, restart names).
"""

from __future__ import annotations

import datetime as _dt
import math

import cftime

from atmorep_coupler.component.clock import to_cftime
from atmorep_coupler.errors import CheckpointError, ConfigError
from atmorep_coupler.timeutil import format_duration

__all__ = ["RunClock", "whole_seconds", "lcm_seconds"]


def whole_seconds(delta: _dt.timedelta, *, what: str, allow_zero: bool = False) -> int:
    """``delta`` as an integer number of seconds; fractions of a second and negatives are errors."""
    micro = delta // _dt.timedelta(microseconds=1)
    if micro % 1_000_000:
        raise ConfigError(f"{what}: {delta.total_seconds():g} s is not a whole number of seconds")
    seconds = micro // 1_000_000
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{what}: must be {'non-negative' if allow_zero else 'positive'}, got {format_duration(delta)}")
    return seconds


def lcm_seconds(values: list[int]) -> int:
    """Least common multiple of positive second counts: the interval after which every schedule repeats."""
    return math.lcm(*values) if values else 1


class RunClock:
    """Elapsed whole seconds since ``start``, advanced in fixed steps up to ``end``.

    ``step`` is the driver's synchronisation interval; the last step is shortened to end exactly at
    ``end`` (the schema only admits runs whose length is a whole number of steps, so in practice it
    never is).
    """

    def __init__(self, start: object, end: object, calendar: str, step_seconds: int) -> None:
        self.calendar = calendar
        self.start = to_cftime(start, calendar, what="run.start")
        self.end = to_cftime(end, calendar, what="run.end")
        self.total_seconds = whole_seconds(self.end - self.start, what="run length (end - start)")
        if step_seconds <= 0:
            raise ConfigError(f"clock step must be positive, got {step_seconds} s")
        self.step_seconds = int(step_seconds)
        self.elapsed = 0

    @property
    def now(self) -> cftime.datetime:
        return self.date_at(self.elapsed)

    @property
    def done(self) -> bool:
        return self.elapsed >= self.total_seconds

    @property
    def next_stop(self) -> int:
        """Elapsed seconds at the end of the current step."""
        return min(self.elapsed + self.step_seconds, self.total_seconds)

    def advance(self) -> None:
        self.elapsed = self.next_stop

    def date_at(self, seconds: int) -> cftime.datetime:
        return self.start + _dt.timedelta(seconds=int(seconds))

    @property
    def time_units(self) -> str:
        """CF units of a time coordinate counted in seconds since the start."""
        return f"seconds since {self.start.strftime('%Y-%m-%d %H:%M:%S')}"

    def state_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "calendar": self.calendar,
                "step_seconds": self.step_seconds, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the restart must come from a run with the same start and calendar."""
        if state["calendar"] != self.calendar or state["start"] != self.start.isoformat():
            raise CheckpointError(
                f"restart clock starts {state['start']} ({state['calendar']}), this run starts "
                f"{self.start.isoformat()} ({self.calendar}): resume only with the run.start and run.calendar it was written with"
            )
        elapsed = int(state["elapsed"])
        if elapsed % self.step_seconds or elapsed > self.total_seconds:
            raise CheckpointError(
                f"restart at {elapsed} s after the start is not a synchronisation point of this run "
                f"(every {self.step_seconds} s up to {self.total_seconds} s)"
            )
        self.elapsed = elapsed
