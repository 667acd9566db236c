"""A day-of-year climatology of store fields, smoothed over a window of days, from a chosen period.

The value at a time ``τ`` is the mean of the store's values at the times of ``period`` whose day of
year lies within ``window_days / 2`` of ``τ``'s (circularly; the year as 365.25 days) and, with
``by_hour``, whose hour of day is ``τ``'s (WeatherBench 2's hour-of-day x day-of-year climatology with a
61-day window). It is *out of sample* for a verification when ``period`` (or the store) does not hold
the verified times -- e.g. the training period, or an independent realisation of the same climate.
A time with no data in its window is an error, never a silent gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from atmorep_coupler.data.store import ERA5Store
from atmorep_coupler.errors import DataError

__all__ = ["Climatology"]

_DAY = np.timedelta64(86400, "s")
_YEAR_DAYS = 365.25


def _day_of_year(times: np.ndarray) -> np.ndarray:
    """Fractional day of year (0 at 1 January 00:00) of ``datetime64`` times."""
    times = np.asarray(times, dtype="datetime64[ns]")
    return (times - times.astype("datetime64[Y]").astype("datetime64[ns]")) / _DAY


def _hour_of_day(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype="datetime64[ns]")
    return np.round((times - times.astype("datetime64[D]").astype("datetime64[ns]")) / np.timedelta64(1, "h"), 6)


@dataclass
class Climatology:
    """Climatology of ``store`` over ``period = (first, last)`` (inclusive; None: the whole store)."""

    store: ERA5Store
    period: tuple[np.datetime64, np.datetime64] | None = None
    window_days: float = 61.0
    by_hour: bool = True
    label: str = "climatology"
    _data: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        times = self.store.times
        if self.period is not None:
            first, last = (np.datetime64(t, "ns") for t in self.period)
            index = np.flatnonzero((times >= first) & (times <= last))
        else:
            index = np.arange(times.size)
        if not index.size:
            raise DataError(f"{self.label}: store {self.store.path} has no times in {self.period}")
        self.index = index
        self._doy = _day_of_year(times[index])
        self._hour = _hour_of_day(times[index])

    def describe(self) -> str:
        span = f"{str(self.store.times[self.index[0]])[:10]} .. {str(self.store.times[self.index[-1]])[:10]}"
        hours = ", by hour of day" if self.by_hour else ""
        return f"{self.label}: {self.store.path} {span}, day-of-year mean over {self.window_days:g} days{hours}"

    def values(self, variable: str, levels: list[float] | None, times: np.ndarray) -> np.ndarray:
        """The climatology of ``variable`` (at ``levels`` hPa, or a surface field) at ``times``:
        ``[len(times), (L,) lat, lon]`` float32, in store units."""
        key = (variable, tuple(levels or ()))
        if key not in self._data:
            self._data[key] = self.store.read(variable, time=self.index, levels=levels).astype(np.float32)
        data = self._data[key]
        times = np.asarray(times, dtype="datetime64[ns]")
        doy, hour = _day_of_year(times), _hour_of_day(times)
        out = np.empty((times.size, *data.shape[1:]), dtype=np.float32)
        cache: dict[tuple[float, float], np.ndarray] = {}
        for k, (d, h) in enumerate(zip(doy, hour)):
            if (d, h) not in cache:
                distance = np.abs((self._doy - d + _YEAR_DAYS / 2) % _YEAR_DAYS - _YEAR_DAYS / 2)
                chosen = distance <= self.window_days / 2
                if self.by_hour:
                    chosen &= self._hour == h
                if not chosen.any():
                    raise DataError(
                        f"{self.describe()}: no data within {self.window_days / 2:g} days of day {d:.1f} of the year"
                        f"{f' at {h:g} h' if self.by_hour else ''} (needed for {str(times[k])[:16]}); use a store or "
                        "period that covers this part of the year"
                    )
                cache[d, h] = data[chosen].mean(axis=0, dtype=np.float64).astype(np.float32)
            out[k] = cache[d, h]
        return out
