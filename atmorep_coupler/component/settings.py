"""The configuration every component shares; subclasses extend it with their own keys.

``Component.initialize(config_file)`` reads a YAML file into the component's ``config_class``
strictly (unknown or missing keys, wrong types: :class:`~atmorep_coupler.errors.ConfigError` naming
the file and key path)::

    name: co2
    start: 2000-01-01T00:00:00
    time_step: PT6H
    calendar: noleap
    end: 2001-01-01        # optional
    ...                    # keys of the subclass config

The dataclasses are ``kw_only`` so a subclass config may add required keys after the defaulted ones.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import cftime

from atmorep_coupler.config import Validated
from atmorep_coupler.component.clock import Calendar, Clock, to_cftime
from atmorep_coupler.errors import ConfigError

__all__ = ["ComponentConfig"]


@dataclass(frozen=True, kw_only=True)
class ComponentConfig(Validated):
    """Name and clock of a component.

    ``start``/``end`` are dates of ``calendar``; strings allow dates that Python's ``datetime``
    rejects (``2000-02-30`` in ``360_day``). ``name`` defaults to the class name.
    """

    start: _dt.datetime | str
    """Start date in ``calendar`` (strings allow dates Python rejects, e.g. '2000-02-30' in 360_day)."""
    time_step: _dt.timedelta
    """The component's time step."""
    name: str = ""
    """Component name; default the class name (in a coupled run: the component id)."""
    end: _dt.datetime | str | None = None
    """Optional end date (BMI ``get_end_time``); null: unbounded."""
    calendar: Calendar = "standard"
    """cftime calendar of ``start``, ``end`` and the component's dates."""

    def validate(self) -> None:
        if self.time_step is None:  # a subclass whose component knows its step (Component._configure)
            self.start_date()
            if self.end is not None:
                to_cftime(self.end, self.calendar, what="end")
            return
        if self.time_step.total_seconds() <= 0:
            raise ConfigError(f"time_step: must be positive, got {self.time_step}")
        self.make_clock()

    def start_date(self) -> cftime.datetime:
        return to_cftime(self.start, self.calendar, what="start")

    def make_clock(self) -> Clock:
        end = None if self.end is None else to_cftime(self.end, self.calendar, what="end")
        return Clock(self.start_date(), self.time_step, end)
