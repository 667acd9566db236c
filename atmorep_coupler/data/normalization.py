"""Normalization statistics per field, level and calendar month: compute once, store, reload.

Two kinds, as in AtmoRep (Lessig et al.): ``global`` (one mean and standard deviation per month and
level) and ``local`` (per grid point, month and level). Both come from one streaming pass over the
store (:func:`atmorep_coupler.data.statistics.compute_normalization`); this module holds, applies, saves
and loads them, and does not import the store (it is the store's :attr:`ERA5Store.normalization`).

Applied at a time, the statistics are **interpolated linearly in time between mid-month values**
(:func:`month_position`): a month's mean and standard deviation hold exactly at the middle of the
month, and between two middles they move linearly, so normalized data has no step at month
boundaries. The sampler (training) and the component (inference) both pass times through
:func:`month_position`, so they normalize alike.

The statistics live in a ``normalization`` group inside the store, or beside it
(``<store>.normalization``) when the store is read-only. A store with consolidated metadata (as
WeatherBench 2's and ARCO-ERA5's) has it rewritten to list the group, so readers that trust it
(``xr.open_zarr(store, group="normalization")``) find the statistics. The pass also counts the
missing values (NaN) of every variable (attribute ``missing_values``): the checkpoint records whether
an input was incomplete in training, and the component fills such an input as training did.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from atmorep_coupler.data.layout import canonical_name, quiet_zarr
from atmorep_coupler.errors import DataError


__all__ = [
    "GROUP",
    "Normalization",
    "load_normalization",
    "month_index",
    "month_position",
    "sidecar_path",
    "StoreLocation",
]

Mode = Literal["global", "local"]
GROUP = "normalization"
#: Fields AtmoRep normalizes globally by default: their local statistics are dominated by noise.
GLOBAL_BY_DEFAULT = frozenset({"vorticity", "divergence"})


def month_index(times) -> np.ndarray:
    """Calendar month of each ``datetime64`` as a 0-based index (January = 0)."""
    months = np.asarray(times).astype("datetime64[M]").astype(np.int64)
    return np.mod(months, 12)


def month_position(times) -> np.ndarray:
    """Where each time lies in the cycle of monthly statistics: ``k`` exactly at the middle of month ``k``
    (0-based, January = 0), linear in time between two middles (so December to January crosses
    ``11 -> 12``; positions are taken modulo 12). ``times``: ``datetime64`` values, or cftime dates of
    any calendar (their own month lengths). Float64, shaped like ``times``."""
    values = np.asarray(times)
    if values.dtype.kind == "M":
        return _position_datetime64(values.astype("datetime64[ns]"))
    flat = [_position_cftime(t) for t in values.reshape(-1)]
    return np.asarray(flat, dtype=np.float64).reshape(values.shape)


def _position_datetime64(t: np.ndarray) -> np.ndarray:
    month = t.astype("datetime64[M]")

    def middle(m: np.ndarray) -> np.ndarray:
        start, end = m.astype("datetime64[ns]"), (m + 1).astype("datetime64[ns]")
        return start + (end - start) // 2

    lo = np.where(t >= middle(month), month, month - 1)
    mid_lo, mid_hi = middle(lo), middle(lo + 1)
    fraction = (t - mid_lo) / (mid_hi - mid_lo)
    return (lo.astype(np.int64) % 12) + fraction


def _position_cftime(date) -> float:
    import cftime

    def start(year: int, month: int):
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        return cftime.datetime(year, month, 1, calendar=date.calendar)

    def middle(year: int, month: int):
        first, last = start(year, month), start(year, month + 1)
        return first + (last - first) / 2

    year, month = date.year, date.month
    if date < middle(year, month):
        month -= 1
    mid_lo, mid_hi = middle(year, month), middle(year, month + 1)
    return float((month - 1) % 12) + (date - mid_lo) / (mid_hi - mid_lo)


@runtime_checkable
class StoreLocation(Protocol):
    """Where a store lives, as :class:`~atmorep_coupler.data.store.ERA5Store` says it: statistics are
    saved into it (or beside it) and loaded from there. A protocol, so that this module, which the store
    uses, need not import the store."""

    path: str | os.PathLike
    storage_options: Mapping | None
    zarr_format: int


def sidecar_path(store_path: str | os.PathLike) -> str:
    """Where the statistics of a read-only store go: ``<store>.normalization`` beside it."""
    return os.fspath(store_path).rstrip("/") + "." + GROUP


class Normalization:
    """Per-month statistics of every field of a store; normalizes and de-normalizes windows.

    ``months`` arguments are month positions (:func:`month_position`): an integer ``k`` selects the
    statistics of month ``k`` (0-based), a fraction interpolates linearly between month ``floor`` and the
    next (modulo 12); pass ``month_position(times)`` to normalize data at its times. ``level_idx`` index
    :attr:`levels`; ``lat_idx``/``lon_idx`` index the store's canonical latitude/longitude axes.
    A zero standard deviation (a field constant over a month) is treated as 1.
    """

    def __init__(self, dataset: xr.Dataset, *, source: str = ""):
        self.dataset = dataset
        self.source = source
        self._cache: dict[str, np.ndarray] = {}

    # --------------------------------------------------------------------------- description
    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.dataset.attrs["variables"])

    @property
    def levels(self) -> np.ndarray:
        """Pressure levels (hPa) of the level axis of 3-D fields."""
        return np.asarray(self.dataset["level"].values) if "level" in self.dataset.coords else np.array([])

    def _check(self, var: str) -> str:
        name = canonical_name(var)
        if name not in self.variables:
            raise DataError(
                f"normalization statistics {self.source!r}: no variable {var!r}; available: "
                f"{sorted(self.variables)}. Recompute with `python -m atmorep_coupler.data stats STORE`"
            )
        return name

    def mode(self, var: str) -> Mode:
        """Default normalization mode of ``var`` (``global`` or ``local``)."""
        return self.dataset[f"mean_{self._check(var)}"].attrs["mode"]

    def units(self, var: str) -> str:
        """Units the statistics of ``var`` are in (the store's units when computed)."""
        return self.dataset[f"mean_{self._check(var)}"].attrs["units"]

    def has_missing(self, var: str) -> bool:
        """Whether the data held missing values (NaN) of ``var``: the count of the streaming pass, or
        for statistics written before it was kept, grid points without any valid value."""
        mean = self.dataset[f"mean_{self._check(var)}"]
        if "missing_values" in mean.attrs:
            return int(mean.attrs["missing_values"]) > 0
        return bool(np.isnan(self._array(f"mean_{self._check(var)}")).any())

    def has_levels(self, var: str) -> bool:
        return "level" in self.dataset[f"mean_{self._check(var)}"].dims

    def level_index(self, levels) -> np.ndarray:
        """Indices into :attr:`levels` of pressure levels given in hPa."""
        wanted = np.atleast_1d(np.asarray(levels, dtype=np.float64))
        match = np.isclose(wanted[:, None], self.levels[None, :], rtol=0.0, atol=1e-6)
        if not match.any(axis=1).all():
            missing = wanted[~match.any(axis=1)][0]
            raise DataError(
                f"normalization statistics {self.source!r}: no level {missing:g} hPa; available: "
                f"{[float(x) for x in self.levels]}"
            )
        return match.argmax(axis=1)

    # --------------------------------------------------------------------------- statistics
    def _array(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = np.asarray(self.dataset[key].values)
        return self._cache[key]

    def _stat(self, kind: str, var: str, mode: Mode | None) -> tuple[np.ndarray, Mode]:
        name = self._check(var)
        mode = mode or self.mode(name)
        if mode not in ("global", "local"):
            raise DataError(f"normalization mode for {name!r} must be 'global' or 'local', got {mode!r}")
        key = f"{kind}_{name}" if mode == "local" else f"global_{kind}_{name}"
        return self._array(key), mode

    def mean(self, var: str, months, *, mode: Mode | None = None) -> np.ndarray:
        """Means at month positions ``months``: ``[month, level]`` (global) or ``[month, level, lat, lon]``
        (local); the level axis is absent for surface fields, lat/lon for series."""
        return _interpolate(self._stat("mean", var, mode)[0], months)

    def std(self, var: str, months, *, mode: Mode | None = None) -> np.ndarray:
        """Standard deviations, shaped like :meth:`mean`."""
        return _interpolate(self._stat("std", var, mode)[0], months)

    def _window(self, var, months, level_idx, lat_idx, lon_idx, mode):
        """Mean and std broadcastable against a window ``[time, (level), (lat, lon)]``."""
        mean, mode = self._stat("mean", var, mode)
        std, _ = self._stat("std", var, mode)
        axes: list[np.ndarray] = [np.arange(12)]
        has_level = self.has_levels(var)
        if has_level:
            axes.append(_indices(level_idx, self.levels.size))
        spatial = self._check(var) in self.dataset.attrs["spatial_variables"]
        if mode == "local" and spatial:
            axes.append(_indices(lat_idx, self.dataset.sizes["latitude"]))
            axes.append(
                np.mod(_indices(lon_idx, self.dataset.sizes["longitude"]), self.dataset.sizes["longitude"])
            )
        sel = np.ix_(*axes)
        months = np.atleast_1d(np.asarray(months))
        mean, std = _interpolate(mean[sel], months), _interpolate(std[sel], months)
        if mode == "global" and spatial:
            mean, std = mean[..., None, None], std[..., None, None]
        return mean, np.where(std > 0, std, 1.0)

    def normalize(
        self, var: str, x, months, level_idx=None, lat_idx=None, lon_idx=None, mode: Mode | None = None
    ) -> np.ndarray:
        """``(x - mean) / std`` for a window ``x[time, (level), (lat, lon)]`` whose time steps fall
        in ``months``; indices select the window's levels and grid points (None = all)."""
        mean, std = self._window(var, months, level_idx, lat_idx, lon_idx, mode)
        return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)

    def denormalize(
        self, var: str, x, months, level_idx=None, lat_idx=None, lon_idx=None, mode: Mode | None = None
    ) -> np.ndarray:
        """Inverse of :meth:`normalize`."""
        mean, std = self._window(var, months, level_idx, lat_idx, lon_idx, mode)
        return (np.asarray(x, dtype=np.float64) * std + mean).astype(np.float32)

    # --------------------------------------------------------------------------- persistence
    def save(self, target: StoreLocation | str | os.PathLike, *, storage_options=None) -> str:
        """Write into the store's ``normalization`` group; if the store is read-only, write a
        sidecar store beside it. ``target`` may also be a path for a standalone statistics store.
        Returns where the statistics went."""
        # Load before writing (the target may be where these statistics were read from) and drop
        # the encodings of the source store, which need not suit the target's zarr format.
        ds = self.dataset.copy(deep=True).load()
        for var in ds.variables.values():
            var.encoding = {}
        if isinstance(target, StoreLocation):
            fmt = target.zarr_format
            try:
                _write(ds, os.fspath(target.path), GROUP, fmt, target.storage_options)
                return f"{os.fspath(target.path)}#{GROUP}"
            except (PermissionError, NotImplementedError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                beside = sidecar_path(target.path)
                warnings.warn(
                    f"store {os.fspath(target.path)!r} is read-only ({type(exc).__name__}); "
                    f"writing normalization statistics beside it to {beside!r}",
                    stacklevel=2,
                )
                _write(ds, beside, None, fmt, target.storage_options)
                return beside
        _write(ds, os.fspath(target), None, 3, storage_options)
        return os.fspath(target)


def _interpolate(monthly: np.ndarray, positions) -> np.ndarray:
    """``monthly[12, ...]`` at month positions ``[n]``: linear between month ``floor(p)`` and the next,
    cyclic; integer positions return the month's values exactly."""
    positions = np.asarray(positions)
    if positions.dtype.kind in "iu":
        return monthly[np.mod(positions, 12)]
    positions = positions.astype(np.float64)
    lo = np.floor(positions)
    weight = (positions - lo).reshape(positions.shape + (1,) * (monthly.ndim - 1))
    lo = lo.astype(np.int64) % 12
    below, above = monthly[lo], monthly[(lo + 1) % 12]
    return np.where(weight == 0, below, (1.0 - weight) * below + weight * above)


def _indices(sel, size: int) -> np.ndarray:
    if sel is None:
        return np.arange(size)
    if isinstance(sel, slice):
        return np.arange(size)[sel]
    return np.atleast_1d(np.asarray(sel))


def _write(ds: xr.Dataset, path: str, group: str | None, zarr_format: int, storage_options) -> None:
    if path.startswith("file://"):  # fsspec's local filesystem does not create parent folders
        path = path[len("file://") :]
    options = dict(storage_options) if storage_options and "://" in path else None
    with quiet_zarr():
        ds.to_zarr(path, group=group, mode="w", zarr_format=zarr_format, consolidated=False,
                   storage_options=options)
        if group is not None:
            _reconsolidate(path, options)


def _reconsolidate(path: str, storage_options) -> None:
    """Rewrite the store's consolidated metadata, if it has any, so that it lists the new group."""
    import zarr

    try:
        zarr.open_group(path, mode="r", use_consolidated=True, storage_options=storage_options)
    except (ValueError, KeyError, OSError):
        return  # no consolidated metadata: readers list the groups themselves
    if "://" in path:
        store = zarr.storage.FsspecStore.from_url(path, storage_options=storage_options, read_only=False)
    else:
        store = zarr.storage.LocalStore(path)
    zarr.consolidate_metadata(store)


def load_normalization(source: StoreLocation | str | os.PathLike, *, storage_options=None) -> Normalization:
    """Load statistics from a store's ``normalization`` group, its sidecar, or a statistics store."""
    if isinstance(source, StoreLocation):
        candidates = [(os.fspath(source.path), GROUP), (sidecar_path(source.path), None)]
        storage_options = source.storage_options
    else:
        path = os.fspath(source)
        candidates = [(path, GROUP), (sidecar_path(path), None), (path, None)]
    opts = dict(storage_options) if storage_options else None
    for path, group in candidates:
        if "://" not in path and not (Path(path) / (group or "")).exists():
            continue
        try:
            with quiet_zarr():
                ds = xr.open_zarr(
                    path,
                    group=group,
                    chunks=None,
                    consolidated=False,
                    storage_options=opts if "://" in path else None,
                )
        except (FileNotFoundError, KeyError, OSError, ValueError):
            continue
        if "variables" in ds.attrs:
            return Normalization(ds, source=path + (f"#{group}" if group else ""))
    tried = ", ".join(p + (f"#{g}" if g else "") for p, g in candidates)
    raise DataError(
        f"no normalization statistics found (looked in {tried}); compute them with "
        f"`python -m atmorep_coupler.data stats STORE`"
    )
