"""The run clock: exact whole seconds, dates of non-standard calendars, restart positions."""

from __future__ import annotations

import datetime as dt

import pytest

from atmorep_coupler.coupling.clock import RunClock, lcm_seconds, whole_seconds
from atmorep_coupler.errors import CheckpointError, ConfigError


def test_360_day_calendar_dates_and_run_length():
    clock = RunClock("2000-02-29T00:00", "2000-03-02T00:00", "360_day", step_seconds=6 * 3600)
    assert clock.total_seconds == 3 * 86400  # Feb 29, Feb 30, Mar 1
    clock.advance()
    clock.advance()
    clock.advance()
    clock.advance()
    assert clock.now.strftime("%Y-%m-%d %H") == "2000-02-30 00"
    assert clock.time_units == "seconds since 2000-02-29 00:00:00"
    while not clock.done:
        clock.advance()
    assert clock.elapsed == clock.total_seconds and clock.now.strftime("%m-%d") == "03-02"


def test_noleap_february_has_28_days():
    assert RunClock("2001-02-01", "2001-03-01", "noleap", 86400).total_seconds == 28 * 86400
    assert RunClock("2000-02-01", "2000-03-01", "proleptic_gregorian", 86400).total_seconds == 29 * 86400


def test_clock_state_round_trip_and_mismatch():
    clock = RunClock("2000-01-01", "2000-01-03", "noleap", 43200)
    clock.advance()
    other = RunClock("2000-01-01", "2000-01-05", "noleap", 43200)  # a longer run may resume from it
    other.load_state_dict(clock.state_dict())
    assert other.elapsed == 43200
    with pytest.raises(CheckpointError, match="resume only with the run.start and run.calendar"):
        RunClock("2000-01-02", "2000-01-03", "noleap", 43200).load_state_dict(clock.state_dict())
    with pytest.raises(CheckpointError, match="not a synchronisation point"):
        RunClock("2000-01-01", "2000-01-03", "noleap", 86400).load_state_dict(clock.state_dict())


def test_whole_seconds_and_lcm():
    assert whole_seconds(dt.timedelta(hours=6), what="p") == 21600
    assert whole_seconds(dt.timedelta(0), what="lag", allow_zero=True) == 0
    with pytest.raises(ConfigError, match="lag: must be non-negative"):
        whole_seconds(dt.timedelta(seconds=-1), what="lag", allow_zero=True)
    with pytest.raises(ConfigError, match="p: 1.5 s is not a whole number of seconds"):
        whole_seconds(dt.timedelta(seconds=1.5), what="p")
    assert lcm_seconds([3600, 5400, 86400]) == 86400 and lcm_seconds([7 * 3600, 86400]) == 7 * 86400
