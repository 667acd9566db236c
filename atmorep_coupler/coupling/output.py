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
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from atmorep_coupler.coupling.clock import RunClock
from atmorep_coupler.coupling.reduction import TimeReduction
from atmorep_coupler.coupling.schema import OutputSpec
from atmorep_coupler.errors import CheckpointError, ConfigError

__all__ = ["OutputStream"]

_REDUCTION = {"mean": "average", "instant": "instant", "min": "min", "max": "max"}
_CELL_METHOD = {"mean": "mean", "instant": "point", "min": "minimum", "max": "maximum"}


class OutputStream:
    """Variables of one component, reduced over ``spec.interval`` and appended to the zarr ``path``.

    ``templates`` are the variables as the component returns them (``get_field``): their dims,
    coordinates, attributes and dtype define the output variables.
    """

    def __init__(
        self, spec: OutputSpec, path: Path, templates: dict[str, xr.DataArray], clock: RunClock, *, title: str
    ) -> None:
        self.spec = spec
        self.path = Path(path)
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
        }
        encoding = {name: {"chunks": (1,) + ds[name].shape[1:]} for name in ds.data_vars}
        encoding["time"] = {"chunks": (1,)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_zarr(self.path, mode="w-", consolidated=True, zarr_format=2, encoding=encoding)

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

    def state_dict(self) -> dict:
        return {"records": self.records, "reducers": {k: r.state_dict() for k, r in self.reducers.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue after ``state['records']`` records: later records in the store (written after the
        restart, before the run stopped) are cut off and will be written again, identically."""
        records = int(state["records"])
        self._truncate(records)
        self.records = records
        for name, reducer in self.reducers.items():
            reducer.load_state_dict(state["reducers"][name])

    def _truncate(self, records: int) -> None:
        import zarr

        if not self.path.exists():
            if records:
                raise CheckpointError(
                    f"{self.path}: the restart expects {records} records here but the store is missing; "
                    "restore it, or start the run afresh"
                )
            return
        if records == 0:  # everything in the store was written after the restart point
            shutil.rmtree(self.path)
            return
        group = zarr.open_group(self.path, mode="r+", use_consolidated=False)  # the arrays as they are on disk
        have = group["time"].shape[0]
        if have < records:
            raise CheckpointError(
                f"{self.path}: has {have} records, the restart expects at least {records}; it belongs to "
                "another run, or was cut short"
            )
        for _, array in group.arrays():
            if array.attrs.get("_ARRAY_DIMENSIONS", [None])[0] == "time" and array.shape[0] != records:
                array.resize((records,) + array.shape[1:])
        zarr.consolidate_metadata(self.path)
