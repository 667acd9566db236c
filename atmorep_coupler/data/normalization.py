"""Normalisation statistics per field, level and calendar month: compute once, store, reload.

Two kinds, as in AtmoRep (Lessig et al.): ``global`` (one mean and standard deviation per month and
level) and ``local`` (per grid point, month and level). Both come from one streaming pass over the
store whose memory is bounded by one time chunk plus the accumulators. Per-chunk moments are merged
with Chan et al.'s parallel update (Chan, Golub & LeVeque 1979; the pairwise form of Welford's
algorithm) in float64, so the result equals the two-pass statistics of the whole array to round-off
and NaNs (e.g. SST over land) are skipped point by point. Global moments are merged from the
local ones (law of total variance), unweighted over grid points -- every point counts once, as the
network sees it.

Applied at a time, the statistics are **interpolated linearly in time between mid-month values**
(:func:`month_position`): a month's mean and standard deviation hold exactly at the middle of the
month, and between two middles they move linearly, so normalised data has no step at month
boundaries. The sampler (training) and the component (inference) both pass times through
:func:`month_position`, so they normalise alike.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from atmorep_coupler.errors import DataError

if TYPE_CHECKING:
    from atmorep_coupler.data.store import ERA5Store

__all__ = [
    "GROUP",
    "Normalization",
    "compute_normalization",
    "load_normalization",
    "month_index",
    "month_position",
    "sidecar_path",
]

Mode = Literal["global", "local"]
GROUP = "normalization"
#: Fields AtmoRep normalises globally by default: their local statistics are dominated by noise.
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


def sidecar_path(store_path: str | os.PathLike) -> str:
    """Where the statistics of a read-only store go: ``<store>.normalization`` beside it."""
    return os.fspath(store_path).rstrip("/") + "." + GROUP


@dataclass
class _Moments:
    """Running count, mean and sum of squared deviations (M2) per month and point, float64."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> _Moments:
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape))

    def merge(self, month: int, x: np.ndarray) -> None:
        """Merge the samples ``x[time, ...]`` into month ``month`` (Chan et al. 1979, eq. 2.1)."""
        valid = ~np.isnan(x)
        nb = valid.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.where(nb > 0, np.nansum(x, axis=0) / nb, 0.0)
        m2_b = np.nansum((x - mean_b) ** 2, axis=0)
        na, mean_a = self.count[month], self.mean[month]
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n > 0, nb / n, 0.0)
        delta = mean_b - mean_a
        self.mean[month] = mean_a + delta * frac
        self.m2[month] = self.m2[month] + m2_b + delta**2 * na * frac
        self.count[month] = n


def _pool(count: np.ndarray, mean: np.ndarray, m2: np.ndarray, axes: tuple[int, ...]):
    """Exact pooled (count, mean, M2) over ``axes`` of per-group moments (total variance law)."""
    n = count.sum(axis=axes)
    mean = np.where(count > 0, mean, 0.0)  # empty groups carry NaN means; they weigh nothing
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_mean = np.where(n > 0, (count * mean).sum(axis=axes) / n, 0.0)
    expanded = np.expand_dims(pooled_mean, axes)
    pooled_m2 = (np.where(count > 0, m2, 0.0) + count * (mean - expanded) ** 2).sum(axis=axes)
    return n, pooled_mean, pooled_m2


def _std(n: np.ndarray, m2: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.where(n > 0, m2 / n, np.nan))


class Normalization:
    """Per-month statistics of every field of a store; normalises and de-normalises windows.

    ``months`` arguments are month positions (:func:`month_position`): an integer ``k`` selects the
    statistics of month ``k`` (0-based), a fraction interpolates linearly between month ``floor`` and the
    next (modulo 12); pass ``month_position(times)`` to normalise data at its times. ``level_idx`` index
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
        from atmorep_coupler.data.store import canonical_name

        name = canonical_name(var)
        if name not in self.variables:
            raise DataError(
                f"normalisation statistics {self.source!r}: no variable {var!r}; available: "
                f"{sorted(self.variables)}. Recompute with `python -m atmorep_coupler.data stats STORE`"
            )
        return name

    def mode(self, var: str) -> Mode:
        """Default normalisation mode of ``var`` (``global`` or ``local``)."""
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
                f"normalisation statistics {self.source!r}: no level {missing:g} hPa; available: "
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
            raise DataError(f"normalisation mode for {name!r} must be 'global' or 'local', got {mode!r}")
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
    def save(self, target: ERA5Store | str | os.PathLike, *, storage_options=None) -> str:
        """Write into the store's ``normalization`` group; if the store is read-only, write a
        sidecar store beside it. ``target`` may also be a path for a standalone statistics store.
        Returns where the statistics went."""
        from atmorep_coupler.data.store import ERA5Store

        # Load before writing (the target may be where these statistics were read from) and drop
        # the encodings of the source store, which need not suit the target's zarr format.
        ds = self.dataset.copy(deep=True).load()
        for var in ds.variables.values():
            var.encoding = {}
        if isinstance(target, ERA5Store):
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
                    f"writing normalisation statistics beside it to {beside!r}",
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
    from atmorep_coupler.data.store import quiet_zarr

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


def load_normalization(source: ERA5Store | str | os.PathLike, *, storage_options=None) -> Normalization:
    """Load statistics from a store's ``normalization`` group, its sidecar, or a statistics store."""
    from atmorep_coupler.data.store import ERA5Store, quiet_zarr

    if isinstance(source, ERA5Store):
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
        f"no normalisation statistics found (looked in {tried}); compute them with "
        f"`python -m atmorep_coupler.data stats STORE`"
    )


def compute_normalization(
    store: ERA5Store,
    variables: Iterable[str] | None = None,
    *,
    modes: Mapping[str, Mode] | None = None,
    max_chunk_bytes: int = 256 * 2**20,
    progress: bool = True,
) -> Normalization:
    """One streaming pass over ``store`` computing global and local monthly statistics (of ``variables``,
    default every variable with a time axis).

    Memory: one time chunk (at most ``max_chunk_bytes`` as float64) plus the accumulators
    (3 float64 arrays of ``12 x levels x lat x lon`` per variable). Months without data get the
    statistics pooled over all months present (listed in the ``filled_months`` attribute), so a
    short record still normalises every date.
    """
    if variables is None:  # static fields (ERA5's land_sea_mask, geopotential_at_surface) have no months
        variables = [v for v in store.variables if "time" in store.dataset[v].dims]
    names = [store.resolve(v) for v in variables]
    modes = dict(modes or {})
    months = month_index(store.times)
    plans = []
    for name in names:
        if "time" not in store.dataset[name].dims:
            raise DataError(
                f"store {str(store.path)!r}: variable {name!r} has no time axis; "
                "normalisation statistics are per calendar month"
            )
        step_bytes = 8 * int(
            np.prod([store.dataset.sizes[d] for d in store.dataset[name].dims if d != "time"])
        )
        chunk = max(1, max_chunk_bytes // step_bytes)
        plans.append((name, chunk))
    total = sum(-(-store.times.size // chunk) for _, chunk in plans)
    data_vars: dict[str, xr.DataArray] = {}
    filled: dict[str, list[int]] = {}
    with tqdm(total=total, desc="normalisation statistics", unit="chunk", disable=not progress) as bar:
        for name, chunk in plans:
            dims = [d for d in ("level", "latitude", "longitude") if d in store.dataset[name].dims]
            shape = (12, *[_axis_size(store, d) for d in dims])
            acc = _Moments.zeros(shape)
            missing = 0
            for start in range(0, store.times.size, chunk):
                stop = min(start + chunk, store.times.size)
                bar.set_postfix_str(f"{name} {np.datetime_as_string(store.times[start], unit='D')}")
                x = store.read(name, time=slice(start, stop)).astype(np.float64)
                missing += int(np.isnan(x).sum())
                for m in np.unique(months[start:stop]):
                    acc.merge(int(m), x[months[start:stop] == m])
                bar.update(1)
            data_vars.update(_finish(name, dims, acc, store, modes.get(name), filled))
            data_vars[f"mean_{name}"].attrs["missing_values"] = missing
    coords = {"month": np.arange(1, 13)}
    if store.levels.size:
        coords["level"] = ("level", store.levels, {"units": "hPa", "long_name": "pressure level"})
    coords["latitude"] = ("latitude", store.latitudes, {"units": "degrees_north"})
    coords["longitude"] = ("longitude", store.longitudes, {"units": "degrees_east"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update(
        variables=list(names),
        spatial_variables=[n for n in names if "latitude" in store.dataset[n].dims],
        source_store=str(store.path),
        time_start=str(store.times[0]) if store.times.size else "",
        time_stop=str(store.times[-1]) if store.times.size else "",
        filled_months={k: v for k, v in filled.items() if v},
        description=(
            "Per calendar month statistics: mean_<var>/std_<var> per grid point (local) and "
            "global_mean_<var>/global_std_<var> over all grid points (unweighted); population "
            "standard deviation (ddof=0); months without data hold statistics pooled over all months"
        ),
    )
    return Normalization(ds, source=str(store.path))


def _axis_size(store: ERA5Store, dim: str) -> int:
    return {"level": store.levels.size, "latitude": store.latitudes.size, "longitude": store.longitudes.size}[
        dim
    ]


def _finish(
    name: str,
    dims: Sequence[str],
    acc: _Moments,
    store: ERA5Store,
    mode: Mode | None,
    filled: dict[str, list[int]],
) -> dict[str, xr.DataArray]:
    """Local and global mean/std from the accumulated moments; empty months get pooled values."""
    spatial = tuple(i + 1 for i, d in enumerate(dims) if d in ("latitude", "longitude"))
    g_n, g_mean, g_m2 = (
        _pool(acc.count, acc.mean, acc.m2, spatial) if spatial else (acc.count, acc.mean, acc.m2)
    )
    empty = np.flatnonzero(g_n.reshape(12, -1).max(axis=1) == 0) if g_n.ndim > 1 else np.flatnonzero(g_n == 0)
    l_mean, l_std = np.where(acc.count > 0, acc.mean, np.nan), _std(acc.count, acc.m2)
    g_mean_out, g_std = np.where(g_n > 0, g_mean, np.nan), _std(g_n, g_m2)
    if empty.size and empty.size < 12:
        all_n, all_mean, all_m2 = _pool(acc.count, acc.mean, acc.m2, (0,))
        l_mean[empty], l_std[empty] = all_mean, _std(all_n, all_m2)
        a_n, a_mean, a_m2 = _pool(g_n, g_mean, g_m2, (0,))
        g_mean_out[empty], g_std[empty] = a_mean, _std(a_n, a_m2)
    filled[name] = [int(m) + 1 for m in empty]
    attrs = {
        "units": store.units(name),
        "mode": mode or ("global" if name in GLOBAL_BY_DEFAULT else "local"),
        "long_name": f"monthly mean of {name}",
    }
    gdims = ["month", *[d for d in dims if d == "level"]]
    return {
        f"mean_{name}": xr.DataArray(l_mean.astype(np.float32), dims=["month", *dims], attrs=attrs),
        f"std_{name}": xr.DataArray(
            l_std.astype(np.float32),
            dims=["month", *dims],
            attrs={"units": attrs["units"], "long_name": f"monthly standard deviation of {name}"},
        ),
        f"global_mean_{name}": xr.DataArray(g_mean_out, dims=gdims, attrs={"units": attrs["units"]}),
        f"global_std_{name}": xr.DataArray(g_std, dims=gdims, attrs={"units": attrs["units"]}),
        f"count_{name}": xr.DataArray(
            acc.count.reshape(12, -1).max(axis=1).astype(np.int64),
            dims=["month"],
            attrs={"long_name": "number of time steps per calendar month"},
        ),
    }
