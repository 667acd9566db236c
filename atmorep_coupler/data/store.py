"""Open ERA5-layout zarr stores (ARCO-ERA5 / WeatherBench2) and read bounded windows from them.

The layout users already have: variables such as ``temperature`` with dims ``time, level,
latitude, longitude``; latitude descending 90 -> -90, longitude 0 -> 360, pressure levels in hPa.
Stores that differ only in conventions (ascending latitude, longitudes -180..180, ``lat``/``lon``/
``pressure_level`` dim names, ERA5 short variable names, levels in Pa, other dim orders) are
mapped onto that canonical view when opened, so the rest of the package sees one layout.

Reads go through xarray's lazy indexing (``chunks=None``), which turns an index window into a zarr
orthogonal selection: only the chunks the window touches are fetched, so a 0.25° store is never
loaded whole.

**Damaged chunks.** A blosc frame says in its 16-byte header how long it is (``cbytes``) and how many
bytes it decodes to (``nbytes``); c-blosc 1 decompresses from a bare pointer and believes the header,
and numcodecs passes it the buffer without comparing the two. A chunk file cut short (a copy or a
download interrupted) therefore makes blosc read past the end of its buffer: silently wrong values when
the memory behind it happens to be mapped, a segmentation fault when the buffer ends a mapping (large
chunks are allocated with ``mmap``; zarr decodes on a thread of its pool, hence "a worker thread"). Random
bytes give a random ``nbytes``, which numcodecs allocates before blosc fails. Importing this module
installs :class:`CheckedBlosc` (zarr v3) and :class:`CheckedNumcodecsBlosc` (zarr v2) in place of the
plain blosc codecs: they compare the header with the buffer (and ``nbytes`` with the chunk's size) before
anything is decoded. :meth:`ERA5Store.read` turns any decoding failure into a :class:`DataError` naming
the variable, the chunk and its times.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import xarray as xr
import zarr
import zarr.registry
from numcodecs.blosc import Blosc as _NumcodecsBlosc
from zarr.codecs import BloscCodec

from atmorep_coupler.data.layout import ALIASES, canonical_name, quiet_zarr
from atmorep_coupler.data.normalization import Normalization, load_normalization
from atmorep_coupler.errors import DataError, UnitError
from atmorep_coupler.units import check_data_units, convert, find_implausible, parse_units, same_units


__all__ = ["ALIASES", "CF_STANDARD_NAMES", "DIMS", "ERA5Store", "canonical_name", "cf_standard_name", "open_store",
           "quiet_zarr"]

#: Canonical dimension order of every variable (a variable uses the subset it has).
DIMS = ("time", "level", "latitude", "longitude")


#: CF standard names of the ARCO-ERA5 variables that have one (CF standard name table, version 84). ERA5's
#: accumulations (J m-2, m) and the default data's ``co2_equivalent`` have none: they get no standard name.
CF_STANDARD_NAMES: dict[str, str] = {
    "temperature": "air_temperature",
    "geopotential": "geopotential",
    "u_component_of_wind": "eastward_wind",
    "v_component_of_wind": "northward_wind",
    "vertical_velocity": "lagrangian_tendency_of_air_pressure",
    "specific_humidity": "specific_humidity",
    "relative_humidity": "relative_humidity",
    "vorticity": "atmosphere_relative_vorticity",
    "divergence": "divergence_of_wind",
    "2m_temperature": "air_temperature",
    "2m_dewpoint_temperature": "dew_point_temperature",
    "skin_temperature": "surface_temperature",
    "10m_u_component_of_wind": "eastward_wind",
    "10m_v_component_of_wind": "northward_wind",
    "surface_pressure": "surface_air_pressure",
    "mean_sea_level_pressure": "air_pressure_at_mean_sea_level",
    "sea_surface_temperature": "sea_surface_temperature",
    "sea_ice_cover": "sea_ice_area_fraction",
    "land_sea_mask": "land_area_fraction",
    "total_column_water_vapour": "atmosphere_mass_content_of_water_vapor",
    "geopotential_at_surface": "surface_geopotential",
}


def cf_standard_name(variable: str, attrs: Mapping[str, Any] | None = None) -> str:
    """The CF standard name of a store variable: its own ``standard_name`` attribute, else the ERA5
    table above, else ``""`` (no standard name: a variable name is not one)."""
    return str((attrs or {}).get("standard_name") or CF_STANDARD_NAMES.get(canonical_name(variable), ""))


#: Dimension spellings found in ERA5 downloads (CDS netCDF/GRIB via cfgrib, CMIP) -> canonical.
_DIM_ALIASES = {
    "lat": "latitude",
    "lon": "longitude",
    "pressure_level": "level",
    "plev": "level",
    "isobaricInhPa": "level",
    "valid_time": "time",
}


# ------------------------------------------------------------------------------------- damaged chunks
_BLOSC_HEADER = 16


def check_blosc_frame(frame, expected_nbytes: int | None = None) -> None:
    """Raise :class:`DataError` unless ``frame`` is a whole blosc frame (its header's ``cbytes`` is its
    length) decoding to ``expected_nbytes`` bytes (when known): checked before blosc reads a byte of it."""
    view = memoryview(frame).cast("B")
    if view.nbytes < _BLOSC_HEADER:
        raise DataError(f"blosc frame of {view.nbytes} bytes is shorter than its 16-byte header")
    nbytes, blocksize, cbytes = struct.unpack_from("<III", view, 4)
    if expected_nbytes is not None and nbytes != expected_nbytes:
        raise DataError(f"its blosc header says it decodes to {nbytes} bytes, the array's chunks hold "
                        f"{expected_nbytes}: not a blosc frame (overwritten?)")
    if cbytes != view.nbytes:
        cut = view.nbytes < cbytes and expected_nbytes is not None
        raise DataError(f"the compressed chunk holds {view.nbytes} bytes but its blosc header says {cbytes}"
                        + (": cut short" if cut else ""))
    if nbytes and blocksize > nbytes:
        raise DataError(f"its blosc header's block size {blocksize} exceeds its {nbytes} bytes: not a blosc frame")


class CheckedBlosc(BloscCodec):
    """zarr v3's blosc codec, with :func:`check_blosc_frame` before every decode (module docstring)."""

    def _decode_sync(self, chunk_bytes, chunk_spec):
        dtype = chunk_spec.dtype.to_native_dtype()
        expected = int(np.prod(chunk_spec.shape)) * dtype.itemsize if dtype.kind in "biufcmM" else None
        check_blosc_frame(chunk_bytes.as_numpy_array(), expected)
        return super()._decode_sync(chunk_bytes, chunk_spec)


class CheckedNumcodecsBlosc(_NumcodecsBlosc):
    """numcodecs' blosc (zarr v2 stores), with :func:`check_blosc_frame` before every decode."""

    codec_id = "blosc"

    def decode(self, buf, out=None):
        check_blosc_frame(numcodecs.compat.ensure_contiguous_ndarray(buf))
        return super().decode(buf, out)


zarr.registry.register_codec("blosc", CheckedBlosc)
zarr.config.set({"codecs.blosc": f"{CheckedBlosc.__module__}.{CheckedBlosc.__qualname__}"})
numcodecs.register_codec(CheckedNumcodecsBlosc, "blosc")


def _describe(path: str | os.PathLike) -> str:
    return f"store {str(path)!r}"


def _is_url(path: str) -> bool:
    return "://" in path


class ERA5Store:
    """A canonical, read-only view of one ERA5-layout zarr store.

    Use :func:`open_store` to create one. Coordinates are exposed canonically (``latitudes``
    descending, ``longitudes`` in [0, 360) ascending, ``levels`` in hPa); :meth:`read` takes
    indices into those canonical axes and maps them onto the storage order.
    """

    def __init__(self, path: str | Path, dataset: xr.Dataset, *, storage_options=None, zarr_format: int = 3):
        self.path = path
        self.storage_options = storage_options
        self.zarr_format = zarr_format
        self.dataset = dataset
        self._name = _describe(path)
        self._check_dims()
        self._times = self._check_time()
        self._levels = self._level_values()
        lat = np.asarray(dataset["latitude"].values, dtype=np.float64)
        lon = np.asarray(dataset["longitude"].values, dtype=np.float64)
        # canonical index -> storage index
        self._lat_order = np.argsort(-lat, kind="stable")
        self._lon_order = np.argsort(np.mod(lon, 360.0), kind="stable")
        self._latitudes = lat[self._lat_order]
        self._longitudes = np.mod(lon, 360.0)[self._lon_order]

    # ----------------------------------------------------------------------------- layout checks
    def _check_dims(self) -> None:
        for var in self.dataset.data_vars.values():
            unknown = [d for d in var.dims if d not in DIMS]
            if unknown:
                raise DataError(
                    f"{self._name}: variable {var.name!r} has dims {var.dims}; expected a subset of "
                    f"{DIMS} (ERA5 layout). Rename or drop dims {unknown}."
                )
        for dim in ("latitude", "longitude"):
            if dim not in self.dataset.coords:
                raise DataError(
                    f"{self._name}: no {dim!r} coordinate; an ERA5-layout store needs "
                    f"'latitude' and 'longitude' coordinate arrays"
                )

    def _check_time(self) -> np.ndarray:
        if "time" not in self.dataset.coords:
            return np.array([], dtype="datetime64[ns]")
        times = self.dataset["time"].values
        if not np.issubdtype(times.dtype, np.datetime64):
            raise DataError(
                f"{self._name}: time coordinate has dtype {times.dtype} (a non-standard calendar?); "
                "only the proleptic Gregorian calendar is supported"
            )
        steps = np.diff(times)
        bad = np.flatnonzero(steps <= np.timedelta64(0, "ns"))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self._name}: time axis is not strictly increasing: time[{i}] = {times[i]} is "
                f"followed by time[{i + 1}] = {times[i + 1]}; sort the store by time and drop "
                "duplicates"
            )
        return times.astype("datetime64[ns]")

    def _level_values(self) -> np.ndarray:
        if "level" not in self.dataset.coords:
            return np.array([], dtype=np.float64)
        level = self.dataset["level"]
        units = level.attrs.get("units", "hPa")
        try:
            return np.asarray(
                convert(level.values.astype(np.float64), units, "hPa", what=f"{self._name}: level"),
                dtype=np.float64,
            )
        except UnitError as exc:
            raise DataError(f"{exc}; pressure levels must be pressures (e.g. hPa)") from None

    # ----------------------------------------------------------------------------- coordinates
    @property
    def variables(self) -> tuple[str, ...]:
        """Canonical names of the data variables."""
        return tuple(str(name) for name in self.dataset.data_vars)

    @property
    def times(self) -> np.ndarray:
        """Valid times, ``datetime64[ns]``, strictly increasing."""
        return self._times

    @property
    def levels(self) -> np.ndarray:
        """Pressure levels in hPa, in storage order."""
        return self._levels

    @property
    def latitudes(self) -> np.ndarray:
        """Latitudes in degrees, descending (north first)."""
        return self._latitudes

    @property
    def longitudes(self) -> np.ndarray:
        """Longitudes in degrees in [0, 360), ascending."""
        return self._longitudes

    @cached_property
    def is_global(self) -> bool:
        """True when the grid covers the sphere: latitudes reach both poles to within one grid
        spacing and the longitudes close the circle (360° / spacing points)."""
        lat, lon = self._latitudes, self._longitudes
        if lat.size < 2 or lon.size < 2:
            return False
        dlat = float(np.max(np.abs(np.diff(lat))))
        dlon = float(np.median(np.diff(lon)))
        reaches_poles = lat[0] >= 90.0 - dlat and lat[-1] <= -90.0 + dlat
        closes_circle = abs(lon.size * dlon - 360.0) <= 0.5 * dlon
        return bool(reaches_poles and closes_circle)

    def require_global(self, what: str = "this use") -> None:
        """Raise :class:`DataError` unless the grid is global."""
        if not self.is_global:
            lat, lon = self._latitudes, self._longitudes
            raise DataError(
                f"{self._name}: grid is regional (latitude {lat.min():g}..{lat.max():g}, "
                f"longitude {lon.min():g}..{lon.max():g}, {lat.size}x{lon.size} points) but "
                f"{what} needs a global grid (latitude -90..90, longitude 0..360); use a global "
                "store or open it with require_global=False where a regional grid is fine"
            )

    # ----------------------------------------------------------------------------- variables
    def resolve(self, var: str) -> str:
        """Canonical name of ``var`` (alias or canonical) in this store; DataError if absent."""
        name = canonical_name(var)
        if name not in self.dataset.data_vars:
            raise DataError(
                f"{self._name}: no variable {var!r}"
                + (f" (alias of {name!r})" if name != var else "")
                + f"; available: {sorted(self.variables)}"
            )
        return name

    def units(self, var: str) -> str:
        """The CF ``units`` attribute of ``var``, validated by the package's pint registry."""
        name = self.resolve(var)
        text = self.dataset[name].attrs.get("units")
        if text is None:
            raise DataError(
                f"{self._name}: variable {name!r} has no CF 'units' attribute; add one (e.g. 'K')"
            )
        parse_units(text, what=f"{self._name}: variable {name!r}")
        return str(text)

    def check_units(self, var: str, *, statistics: Normalization | None = None) -> str:
        """The units of ``var``, checked where data enter training or a component: a CF ``units``
        attribute that parses, fits the variable's CF ``standard_name``, and equals the units of the
        normalization ``statistics`` (the model learnt those). :class:`DataError` naming the variable and
        the fix otherwise. Implausible values are caught by :meth:`read`."""
        name = self.resolve(var)
        attrs = self.dataset[name].attrs
        what = f"{self._name}: variable {name!r}"
        try:
            text = check_data_units(attrs.get("units"), what=what, standard_name=attrs.get("standard_name"))
        except UnitError as exc:
            raise DataError(str(exc)) from None
        if statistics is not None:
            trained = statistics.units(name)
            if not same_units(text, trained):
                raise DataError(
                    f"{what}: units {text!r}, but its normalization statistics ({statistics.source}) are in "
                    f"{trained!r}; correct the 'units' attribute if the data are in {trained!r}, else recompute the "
                    "statistics (python -m atmorep_coupler.data stats STORE) and train on them"
                )
        return text

    def has_levels(self, var: str) -> bool:
        """True for variables on pressure levels (with a ``level`` dim)."""
        return "level" in self.dataset[self.resolve(var)].dims

    def level_indices(self, var: str, levels) -> np.ndarray:
        """Storage indices of the pressure levels ``levels`` (hPa); DataError naming a missing one."""
        name = self.resolve(var)
        wanted = np.atleast_1d(np.asarray(levels, dtype=np.float64))
        match = np.isclose(wanted[:, None], self._levels[None, :], rtol=0.0, atol=1e-6)
        missing = wanted[~match.any(axis=1)]
        if missing.size:
            raise DataError(
                f"{self._name}: variable {name!r} has no level {missing[0]:g} hPa; "
                f"available levels: {[float(x) for x in self._levels]}"
            )
        return match.argmax(axis=1)

    # ----------------------------------------------------------------------------- reading
    def read(
        self,
        var: str,
        *,
        time: slice | np.ndarray | None = None,
        levels=None,
        lat: slice | np.ndarray | None = None,
        lon: np.ndarray | slice | None = None,
        units: str | None = None,
    ) -> np.ndarray:
        """Read a window of ``var`` as float32 with dims ``[time, level, lat, lon]`` (3-D),
        ``[time, lat, lon]`` (surface) or ``[time]`` (series).

        ``time``: slice or indices into :attr:`times`; ``levels``: hPa values (default all);
        ``lat``: slice or indices into the descending :attr:`latitudes`; ``lon``: indices into
        :attr:`longitudes`, taken modulo their number so a window may wrap across 0°/360°;
        ``units``: convert to these units (CF string). Only the chunks the window touches are read.
        """
        name = self.resolve(var)
        da = self.dataset[name]
        dims = [d for d in DIMS if d in da.dims]
        src_units = self.units(name) if units is not None else None
        index: dict[str, Any] = {}
        reorder: dict[str, np.ndarray] = {}
        if "time" in da.dims and time is not None:
            index["time"] = _as_indexer(time, self._times.size, f"{self._name}: {name!r} time")
        if "level" in da.dims and levels is not None:
            index["level"], reorder["level"] = _plan(self.level_indices(name, levels))
        if "latitude" in da.dims:
            wanted = _canonical_indices(
                lat, self._latitudes.size, wrap=False, what=f"{self._name}: {name!r} latitude"
            )
            index["latitude"], reorder["latitude"] = _plan(self._lat_order[wanted])
        if "longitude" in da.dims:
            wanted = _canonical_indices(
                lon, self._longitudes.size, wrap=True, what=f"{self._name}: {name!r} longitude"
            )
            index["longitude"], reorder["longitude"] = _plan(self._lon_order[wanted])
        try:
            values = da.isel(index).transpose(*dims).values
        except (DataError, RuntimeError, ValueError, OSError, KeyError) as exc:
            raise self._damaged(name, index, exc) from None
        for axis, dim in enumerate(dims):
            if reorder.get(dim) is not None:
                values = np.take(values, reorder[dim], axis=axis)
        values = np.asarray(values, dtype=np.float32)
        self._check_plausible(name, values, index.get("time"))
        if units is not None:
            values = np.asarray(
                convert(values, src_units, units, what=f"{self._name}: variable {name!r}"),
                dtype=np.float32,
            )
        return values

    def _check_plausible(self, name: str, values: np.ndarray, time) -> None:
        """Values far outside what ``name`` can be in its units attribute (degC data labelled K) are a
        :class:`DataError` naming the time; variables without a known range or units pass."""
        attrs = self.dataset[name].attrs
        units = attrs.get("units")
        if not isinstance(units, str) or "time" not in self.dataset[name].dims:
            return
        try:
            found = find_implausible(values, name, units, standard_name=attrs.get("standard_name"))
        except UnitError:
            return  # an unparsable attribute is check_units' finding
        if found is None:
            return
        k, value, (low, high) = found
        times = self._times[time] if time is not None else self._times
        when = np.datetime_as_string(np.atleast_1d(times)[k], unit="s")
        raise DataError(
            f"{self._name}: variable {name!r} at {when}: value {value:g} {units} is outside the plausible range "
            f"{low:g} .. {high:g} {units}; the data are not in the units their attribute says (e.g. degC labelled "
            "K): correct the 'units' attribute or convert the data"
        )

    def _damaged(self, name: str, index: Mapping[str, Any], exc: Exception) -> DataError:
        """The :class:`DataError` for a window of ``name`` that could not be decoded: the first damaged
        chunk of the window (each is decoded alone to find it), its file and its times, and the fix."""
        storage = self.dataset[name].encoding.get("source_name", name)
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, DataError) else str(exc)
        where = "a chunk of the window"
        try:
            array = zarr.open_group(os.fspath(self.path), mode="r", storage_options=self._url_options())[storage]
            dims = list(self.dataset[name].dims)
            blocks = []
            for dim, size in zip(dims, array.chunks):
                wanted = np.arange(array.shape[dims.index(dim)])[index[dim]] if dim in index else None
                count = -(-array.shape[dims.index(dim)] // size)
                blocks.append(sorted(set((np.atleast_1d(wanted) // size).tolist())) if wanted is not None
                              else range(count))
            for block in itertools.product(*blocks):
                try:
                    array.get_block_selection(block)
                except Exception as inner:  # noqa: BLE001 -- whatever the decoder raised locates the chunk
                    key = array.metadata.encode_chunk_key(block)
                    where = f"chunk {storage}/{key}"
                    if "time" in dims:
                        step = array.chunks[dims.index("time")]
                        t0 = block[dims.index("time")] * step
                        times = self._times[t0:t0 + step]
                        span = np.datetime_as_string(times[[0, -1]], unit="s") if times.size else None
                        where += f" (times {span[0]} .. {span[1]})" if span is not None else ""
                    reason = str(inner) if isinstance(inner, DataError) else f"{type(inner).__name__}: {inner}"
                    break
        except Exception:  # noqa: BLE001 -- locating is best effort; the message below stands without it
            pass
        return DataError(
            f"{self._name}: variable {name!r}: {where} cannot be decoded ({reason}); the store is damaged (a copy "
            "or download cut short?): restore that chunk from the source, or re-create the store"
        )

    def _url_options(self):
        return dict(self.storage_options) if self.storage_options and _is_url(os.fspath(self.path)) else None

    def time_index(self, when) -> int:
        """Index of the valid time ``when`` (anything ``np.datetime64`` accepts); DataError if absent."""
        t = np.datetime64(when, "ns")
        i = int(np.searchsorted(self._times, t))
        if i >= self._times.size or self._times[i] != t:
            span = f"{self._times[0]} .. {self._times[-1]}" if self._times.size else "no times"
            raise DataError(f"{self._name}: no time {t} (store has {span})")
        return i

    # ----------------------------------------------------------------------------- statistics
    @cached_property
    def normalization(self) -> Normalization:
        """Normalization statistics stored with this store (see :mod:`.normalization`)."""
        return load_normalization(self)

    def __repr__(self) -> str:
        return (
            f"ERA5Store({str(self.path)!r}, {len(self.variables)} variables, {self._times.size} "
            f"times, levels {self._levels.tolist()}, {self._latitudes.size}x{self._longitudes.size})"
        )


def _as_indexer(sel, size: int, what: str) -> slice | np.ndarray:
    if isinstance(sel, slice):
        return sel
    idx = np.asarray(sel)
    if idx.dtype.kind not in "iu":
        raise DataError(f"{what}: expected a slice or integer indices, got dtype {idx.dtype}")
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise DataError(
            f"{what}: index {int(idx.max()) if idx.max() >= size else int(idx.min())} "
            f"out of range for {size} entries"
        )
    return np.atleast_1d(idx)


def _canonical_indices(sel, size: int, *, wrap: bool, what: str) -> np.ndarray:
    """Turn a canonical-axis selection into explicit indices (longitudes wrap modulo ``size``)."""
    if sel is None:
        return np.arange(size)
    if isinstance(sel, slice):
        return np.arange(size)[sel]
    idx = np.atleast_1d(np.asarray(sel))
    if idx.dtype.kind not in "iu":
        raise DataError(f"{what}: expected a slice or integer indices, got dtype {idx.dtype}")
    if wrap:
        return np.mod(idx, size)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise DataError(f"{what}: index {bad} out of range for {size} points")
    return idx


def _plan(storage_idx: np.ndarray) -> tuple[slice | np.ndarray, np.ndarray | None]:
    """Cheapest storage indexer for ``storage_idx`` and the reorder that restores its order.

    A contiguous ascending run becomes a slice; anything else (a longitude window wrapping across
    360°, a flipped latitude axis) reads the sorted unique indices once and reorders in memory.
    """
    idx = np.asarray(storage_idx, dtype=np.int64)
    if idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1), None
    unique, inverse = np.unique(idx, return_inverse=True)
    if unique.size == idx.size and np.array_equal(unique, idx):
        return unique, None
    return unique, inverse


def _canonicalize(ds: xr.Dataset, name: str) -> xr.Dataset:
    """Rename ERA5 download spellings of dims and short variable names to the canonical ones."""
    dims = {k: v for k, v in _DIM_ALIASES.items() if k in ds.variables and v not in ds.variables}
    ds = ds.rename(dims)
    clashes = [(k, v) for k, v in ALIASES.items() if k in ds.data_vars and v in ds.data_vars]
    if clashes:
        raise DataError(f"{name}: both {clashes[0][0]!r} and its alias {clashes[0][1]!r} exist")
    return ds.rename({k: v for k, v in ALIASES.items() if k in ds.data_vars})


_CREDENTIALS_HINT = (
    "check the credentials: storage_options={'key': ..., 'secret': ...} (or the environment: AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS), or storage_options={'anon': True} "
    "(s3) / {'token': 'anon'} (gs) for a public bucket"
)


def _why_not_opened(path: str, storage_options: Mapping[str, Any] | None, exc: BaseException) -> str:
    """Why a store did not open, in words that say what to fix: credentials, a missing bucket, a path
    with no zarr store (object stores answer all three with errors that do not say which)."""
    detail = f"({type(exc).__name__}: {exc})"
    if isinstance(exc, PermissionError):
        return f"access denied {detail}; {_CREDENTIALS_HINT}"
    if not _is_url(path) or path.startswith(("file://", "memory://")):
        return f"cannot open as a zarr store {detail}"
    import fsspec

    try:
        fs, root = fsspec.url_to_fs(path, **dict(storage_options or {}))
        bucket = root.strip("/").split("/")[0]
        bucket_exists = fs.exists(bucket)
    except PermissionError as probe:
        return f"access denied ({type(probe).__name__}: {probe}); {_CREDENTIALS_HINT}"
    except Exception:  # noqa: BLE001 - the probe only refines the message; the original error stands
        return f"cannot open as a zarr store {detail}"
    if not bucket_exists:
        return f"bucket {bucket!r} does not exist (or is not visible with these credentials); check the URL {detail}"
    return (f"no zarr store at this path in bucket {bucket!r} (no .zgroup, .zmetadata or zarr.json); check the "
            f"path after the bucket {detail}")


def open_store(
    path_or_url: str | os.PathLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    require_global: bool = True,
) -> ERA5Store:
    """Open a zarr (v2 or v3) store in the ERA5 layout from a local path or an fsspec URL
    (``file://``, ``memory://``, ``s3://``, ``gs://``, ...).

    ``require_global`` (default) rejects regional grids, which the sampler, tiling and coupling
    cannot use; pass False to inspect a regional store.
    """
    path = os.fspath(path_or_url)
    name = _describe(path)
    if not _is_url(path) and not Path(path).exists():
        raise DataError(f"{name}: no such file or directory; check the path (or pass an fsspec URL)")
    opts = dict(storage_options) if storage_options and _is_url(path) else None
    try:
        with quiet_zarr():
            ds = xr.open_zarr(
                path,
                chunks=None,
                consolidated=None,
                storage_options=opts,
            )
        fmt = zarr.open_group(path, mode="r", storage_options=opts).metadata.zarr_format
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise DataError(f"{name}: {_why_not_opened(path, opts, exc)}") from None
    store = ERA5Store(path, _canonicalize(ds, name), storage_options=storage_options, zarr_format=fmt)
    if require_global:
        store.require_global("atmorep_coupler")
    return store
