"""Zarr output with CF metadata, appended once per output interval while the run goes on.

One :class:`OutputStream` per ``outputs[]`` entry. After every step of its component the driver hands
it the current values; at the end of each interval the reduced record (mean, instant, min or max
over the samples after the steps in ``(t - interval, t]``) is appended along ``time``.

Why a partly written run stays readable: every variable is chunked one record per chunk along time,
so an append only *adds* chunk files (zarr writes each file atomically) and never rewrites an
earlier one; the consolidated metadata is rewritten last, so a reader that opens the store (which
uses the consolidated metadata) sees the records completed before a kill, and nothing half-written.
On resume the store is cut back to the number of records the restart recorded, and the identical
records are written again.

Why a kill never leaves a half-made store or costs someone else's data: the first record is written
into ``.<name>.partial`` next to the store and renamed into place when complete; every store carries
the identity of the stream that made it (the ``atmorep_coupler_stream`` attribute), and a resumed run
cuts back or removes only a store with its own stream's identity; the temporary files a killed write
leaves (``*.partial``) are removed on resume.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from atmorep_coupler.coupling.clock import RunClock
from atmorep_coupler.coupling.reduction import TimeReduction
from atmorep_coupler.coupling.schema import OutputSpec
from atmorep_coupler.errors import CheckpointError, ConfigError

__all__ = ["OutputStream", "STREAM_ATTR"]

STREAM_ATTR = "atmorep_coupler_stream"
"""Global attribute of every output store: the identity of the stream that wrote it."""

_REDUCTION = {"mean": "average", "instant": "instant", "min": "min", "max": "max"}
_CELL_METHOD = {"mean": "mean", "instant": "point", "min": "minimum", "max": "maximum"}


class OutputStream:
    """Variables of one component, reduced over ``spec.interval`` and appended to the zarr ``path``.

    ``templates`` are the variables as the component returns them (``get_field``): their dims,
    coordinates, attributes and dtype define the output variables.
    """

    def __init__(
        self, spec: OutputSpec, path: Path, templates: dict[str, xr.DataArray], clock: RunClock, *, title: str,
        run: str = "",
    ) -> None:
        self.spec = spec
        self.path = Path(path)
        #: Identity written into the store and the restarts: run, component, variables, interval, reduction.
        self.stream = (f"{run}/{spec.component}/{','.join(spec.variables)}/{int(spec.interval.total_seconds())}s/"
                       f"{spec.reduction}")
        self.clock = clock
        self.title = title
        self.interval = int(spec.interval.total_seconds())
        self.templates = {name: da.drop_vars("time", errors="ignore") for name, da in templates.items()}
        self.reducers = {name: TimeReduction(_REDUCTION[spec.reduction]) for name in spec.variables}
        self.records = 0
        self._arrays = None  # the store's zarr arrays, opened at the first append

    # -- sampling ----------------------------------------------------------------------------
    def wants_sample(self, elapsed: int) -> bool:
        """An instant output needs only the value at the end of its interval."""
        return self.spec.reduction != "instant" or elapsed % self.interval == 0

    def add(self, elapsed: int, values: dict[str, np.ndarray]) -> None:
        """Take the sample after a component step ending ``elapsed`` s after the start; append a
        record when that closes an interval."""
        for name, reducer in self.reducers.items():
            reducer.add(values[name])
        if elapsed % self.interval == 0:
            self._append(elapsed)

    # -- writing -----------------------------------------------------------------------------
    def _append(self, elapsed: int) -> None:
        data_vars = {}
        for name, reducer in self.reducers.items():
            template = self.templates[name]
            value = reducer.result().astype(template.dtype)[None]
            attrs = {k: v for k, v in template.attrs.items() if k in ("units", "standard_name", "long_name")}
            attrs["cell_methods"] = f"time: {_CELL_METHOD[self.spec.reduction]}"
            data_vars[name] = (("time",) + template.dims, value, attrs)
        time_attrs = {"standard_name": "time", "units": self.clock.time_units, "calendar": self.clock.calendar,
                      "axis": "T"}
        if self.spec.reduction != "instant":
            time_attrs["bounds"] = "time_bnds"
            data_vars["time_bnds"] = (("time", "nv"), np.array([[elapsed - self.interval, elapsed]], dtype=np.int64))
        coords = {"time": ("time", np.array([elapsed], dtype=np.int64), time_attrs)}
        ds = xr.Dataset(data_vars, coords=coords)
        if self.records == 0:
            self._create(ds)
        else:
            self._append_record(ds)
        self.records += 1

    def _create(self, ds: xr.Dataset) -> None:
        """The first record, through xarray: CF coordinates, attributes and encodings."""
        coords = {}
        for template in self.templates.values():
            coords.update(template.coords)
        ds = ds.assign_coords(coords)
        ds.attrs = {
            "Conventions": "CF-1.10",
            "title": self.title,
            "source": "atmorep_coupler coupled run",
            "comment": f"{self.spec.component}: {self.spec.reduction} over {self.interval} s per record; "
                       "records are appended as the run goes",
            STREAM_ATTR: self.stream,
        }
        encoding = {name: {"chunks": (1,) + ds[name].shape[1:]} for name in ds.data_vars}
        encoding["time"] = {"chunks": (1,)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._partial_path()
        shutil.rmtree(partial, ignore_errors=True)
        ds.to_zarr(partial, mode="w-", consolidated=True, zarr_format=2, encoding=encoding)
        os.rename(partial, self.path)  # complete, or not there at all

    def _append_record(self, ds: xr.Dataset) -> None:
        """Later records, straight into the zarr arrays: grow each along time, write the new chunk,
        then publish all of it at once by rewriting the consolidated metadata."""
        import zarr

        if self._arrays is None:
            group = zarr.open_group(self.path, mode="r+", use_consolidated=False)
            self._arrays = {name: group[name] for name in ds.variables}
        for name, array in self._arrays.items():
            array.resize((self.records + 1,) + array.shape[1:])
            array[self.records] = ds[name].values[0]
        zarr.consolidate_metadata(self.path)

    # -- fresh start and restarts ---------------------------------------------------------------
    def check_fresh(self) -> None:
        """A fresh run must not overwrite an existing store (never lose data)."""
        if self.path.exists():
            raise ConfigError(
                f"{self.path}: output store exists; delete it, choose another --out folder, or resume the run "
                "from its restart files (--resume)"
            )

    def _partial_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.partial")

    def state_dict(self) -> dict:
        return {"records": self.records, "stream": self.stream, "path": str(self.spec.path),
                "reducers": {k: r.state_dict() for k, r in self.reducers.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue after ``state['records']`` records: later records in the store (written after the
        restart, before the run stopped) are cut off and will be written again, identically."""
        if state.get("stream", self.stream) != self.stream or state.get("path", str(self.spec.path)) != str(self.spec.path):
            raise CheckpointError(
                f"{self.path}: the restart was written for output {state.get('path')!r} ({state.get('stream')}), "
                f"this run writes {str(self.spec.path)!r} ({self.stream}); restore the outputs section the run "
                "started with, or start it afresh")
        records = int(state["records"])
        self._truncate(records)
        self.records = records
        for name, reducer in self.reducers.items():
            reducer.load_state_dict(state["reducers"][name])

    def _truncate(self, records: int) -> None:
        """Cut the store back to ``records`` (remove it at 0) once it is known to be this stream's own."""
        import zarr

        partial = self._partial_path()
        if partial.is_dir():  # a first record whose writing was killed
            shutil.rmtree(partial)
        if not self.path.exists():
            if records:
                raise CheckpointError(
                    f"{self.path}: the restart expects {records} records here but the store is missing; "
                    "restore it, or start the run afresh"
                )
            return
        group = self._own_group()
        if records == 0:  # everything in the store was written after the restart point
            shutil.rmtree(self.path)
            return
        have = group["time"].shape[0]
        if have < records:
            raise CheckpointError(
                f"{self.path}: has {have} records, the restart expects at least {records}; it belongs to "
                "another run, or was cut short"
            )
        for stray in self.path.rglob("*.partial"):  # temporary files of a write the kill interrupted
            if stray.is_file():
                stray.unlink()
        for _, array in group.arrays():
            if array.attrs.get("_ARRAY_DIMENSIONS", [None])[0] == "time" and array.shape[0] != records:
                array.resize((records,) + array.shape[1:])
        zarr.consolidate_metadata(self.path)

    def _own_group(self):
        """The store's zarr group, if this stream wrote it; else a :class:`CheckpointError` (nothing is touched)."""
        import zarr

        try:
            group = zarr.open_group(self.path, mode="r+", use_consolidated=False)  # the arrays as they are on disk
            owner = group.attrs.get(STREAM_ATTR)
        except Exception as exc:  # noqa: BLE001 -- zarr raises many kinds for what is not a store of its own
            owner, group = f"not a zarr store ({type(exc).__name__})", None
        if owner != self.stream:
            raise CheckpointError(
                f"{self.path}: exists but was not written by this run's output {self.stream!r} (found "
                f"{owner!r}); it is left untouched. Move it away, or restore the output path the run was started "
                "with")
        return group
