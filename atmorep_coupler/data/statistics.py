"""One streaming pass over a store: its normalization statistics (:class:`.normalization.Normalization`).

Memory is bounded by one time chunk plus the accumulators. Per-chunk moments are merged with Chan et
al.'s parallel update (Chan, Golub & LeVeque 1979; the pairwise form of Welford's algorithm) in
float64, so the result equals the two-pass statistics of the whole array to round-off, and NaNs (e.g.
SST over land) are skipped point by point. Global moments are merged from the local ones (law of total
variance), unweighted over grid points -- every point counts once, as the network sees it. The pass
also counts the missing values of every variable (attribute ``missing_values``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from atmorep_coupler.data.normalization import GLOBAL_BY_DEFAULT, Mode, Normalization, month_index
from atmorep_coupler.data.store import ERA5Store
from atmorep_coupler.errors import DataError

__all__ = ["compute_normalization"]


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
    short record still normalizes every date.
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
                "normalization statistics are per calendar month"
            )
        step_bytes = 8 * int(
            np.prod([store.dataset.sizes[d] for d in store.dataset[name].dims if d != "time"])
        )
        chunk = max(1, max_chunk_bytes // step_bytes)
        plans.append((name, chunk))
    total = sum(-(-store.times.size // chunk) for _, chunk in plans)
    data_vars: dict[str, xr.DataArray] = {}
    filled: dict[str, list[int]] = {}
    with tqdm(total=total, desc="normalization statistics", unit="chunk", disable=not progress) as bar:
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
