"""One coupling: time reduction over the period, lag buffer, unit conversion, regridding, conservation.

Timing, in whole seconds since the run start (``P`` = period, ``L`` = lag, a multiple of ``P``):

* The source is sampled after each of its steps. The window ``(E - P, E]`` closes when the source
  reaches ``E`` (a multiple of ``P``); its reduction is converted, regridded and kept as the
  *put* for ``E``.
* The destination takes one import at the start ``T`` of each of its windows ``[T, T + P)``: the
  put for ``E = T + P - L``. ``L = 0``: the source's window over the same span (sequential: the
  source runs the window first). ``L = P``: the window that ended at ``T``. Puts for ``E <= 0``
  (windows that end at or before the start) are the source's initial values, sampled once at the start.

Order of operations on a closed window: reduce on the source grid (accumulate-then-map: mapping
and time reduction commute, so one regridding per window), convert units (an affine map applied to
every sample, hence ``scale * sum + n * offset`` for ``accumulate``), regrid (vector pairs through
3-D Cartesian components; with ``remap.fraction`` fraction-weighted, ``W(f x) / W(f)``), then the
conservation diagnostic compares the area integrals on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from atmorep_coupler.coupling.reduction import TimeReduction
from atmorep_coupler.coupling.schema import CouplingSpec
from atmorep_coupler.errors import ComponentError, RegridError
from atmorep_coupler.units import conversion

__all__ = ["FieldRoute", "Exchange", "ConservationRecord", "area_integral_weights"]


@dataclass(frozen=True)
class FieldRoute:
    """One field (or [u, v] pair) of a coupling, resolved against the two components.

    ``src_units``: the source's export units; ``units``: the units delivered to the destination;
    ``dst_dims``: the destination grid's dims, for the delivered DataArray; ``regridder``: a
    :class:`~atmorep_coupler.regrid.Regridder`, or None when both sides share the grid (or are scalars);
    ``integral_weights``: :func:`area_integral_weights` when the coupling asks for a conservation
    diagnostic.
    """

    src: tuple[str, ...]
    dst: tuple[str, ...]
    src_units: str
    units: str
    dst_dims: tuple[str, ...]
    regridder: Any = field(default=None, compare=False, repr=False)
    integral_weights: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def is_vector(self) -> bool:
        return len(self.src) == 2


@dataclass(frozen=True)
class ConservationRecord:
    """Area integrals of one exchanged field at the close of a window (``time``: seconds since start)."""

    coupling: str
    field: str
    time: int
    source: float
    destination: float

    @property
    def relative_error(self) -> float:
        scale = max(abs(self.source), abs(self.destination), np.finfo(float).tiny)
        return abs(self.destination - self.source) / scale


def area_integral_weights(primary) -> tuple[np.ndarray, np.ndarray]:
    """Cell weights ``(w_a, w_b)`` with ``sum(F_a w_a) = sum(F_b w_b)`` for first-order conservative maps.

    ``primary`` is the regridder of the coupling's method *without* its fallback chain: cells that
    only a fallback fills take no part. Source: ``area_a * frac_a``. Destination: ``area_b * frac_b``
    for FRACAREA weights (rows sum to 1 on the covered part), ``area_b`` on covered cells for DSTAREA
    weights (rows already carry ``frac_b``). Other methods have no fractions: active source cells
    and mapped destination cells count with their full areas (the diagnostic then shows how far the
    method is from conserving).
    """
    w = primary.weights
    area_a = np.asarray(w.area_a if w.area_a is not None else primary.src_grid.area.ravel())
    area_b = np.asarray(w.area_b if w.area_b is not None else primary.dst_grid.area.ravel())
    if primary.method == "conservative_normed":
        src, dst = area_a * w.frac_a, area_b * w.frac_b
    elif primary.method == "conservative":
        src, dst = area_a * w.frac_a, np.where(w.frac_b > 0, area_b, 0.0)
    else:
        src, dst = area_a * primary.src_grid.mask.ravel(), np.where(w.mapped, area_b, 0.0)
    return src.reshape(primary.src_grid.shape), dst.reshape(primary.dst_grid.shape)


class Exchange:
    """The state and arithmetic of one coupling (module docstring)."""

    def __init__(self, index: int, spec: CouplingSpec, routes: list[FieldRoute]) -> None:
        self.index = index
        self.spec = spec
        self.name = f"couplings[{index}] {spec.from_}->{spec.to}"
        self.routes = routes
        self.period = int(spec.period.total_seconds())
        self.lag = int(spec.lag.total_seconds())
        self.reduction = spec.time_reduction
        self.fraction = spec.remap.fraction if spec.remap is not None else None
        self.source_fields = tuple(dict.fromkeys(
            [name for route in routes for name in route.src] + ([self.fraction] if self.fraction else [])
        ))
        self.reducers = {name: TimeReduction(self.reduction) for name in self.source_fields}
        self._conversion = {route.dst: conversion(route.src_units, route.units, what=f"{self.name}: {route.src}")
                            for route in routes}
        self.puts: dict[int, dict[str, xr.DataArray]] = {}
        self.initial: dict[str, xr.DataArray] | None = None
        self.next_import = 0
        self.records: list[ConservationRecord] = []

    # -- source side -------------------------------------------------------------------------
    @property
    def needs_initial(self) -> bool:
        """Whether some import uses a put for a window ending at or before the start."""
        return self.next_import + self.period - self.lag <= 0

    def wants_sample(self, elapsed: int) -> bool:
        """Instant exchanges only need the sample that closes a window."""
        return self.reduction != "instant" or elapsed % self.period == 0

    def add_sample(self, elapsed: int, values: dict[str, np.ndarray]) -> None:
        """Take the source's values after a step ending ``elapsed``; close the window at a period end."""
        for name, sample in self._samples(values).items():
            self.reducers[name].add(sample)
        if elapsed % self.period == 0:
            count = next(iter(self.reducers.values())).count
            reduced = {name: reducer.result() for name, reducer in self.reducers.items()}
            self.puts[elapsed] = self._transfer(reduced, count, elapsed)

    def set_initial(self, values: dict[str, np.ndarray]) -> None:
        """The put for windows ending at or before the start: one sample of the initial state."""
        self.initial = self._transfer(self._samples(values), 1, 0)

    def _samples(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the reducers take: the fields, or with a fraction ``f`` the products ``f * x`` (and
        ``f``), whose window means divide into the fraction-weighted time mean of ``x``."""
        samples = {name: np.asarray(values[name], dtype=np.float64) for name in self.source_fields}
        if self.fraction:
            frac = samples[self.fraction]
            for name in samples:
                if name != self.fraction:
                    samples[name] = np.where(frac > 0, frac * samples[name], 0.0)
        return samples

    # -- destination side --------------------------------------------------------------------
    def import_due(self, dst_elapsed: int) -> bool:
        return dst_elapsed == self.next_import

    def import_ready(self) -> bool:
        """Whether the put the next import needs exists (the source has closed that window)."""
        end = self.next_import + self.period - self.lag
        return end <= 0 or end in self.puts

    def take_import(self) -> dict[str, xr.DataArray]:
        """The fields for the destination window starting at ``next_import``; advances it by one period."""
        end = self.next_import + self.period - self.lag
        payload = self.initial if end <= 0 else self.puts.pop(end)
        if payload is None:
            raise ComponentError(f"{self.name}: no initial values were sampled for the window ending at {end} s")
        self.next_import += self.period
        if not self.needs_initial:
            self.initial = None
        return payload

    # -- arithmetic --------------------------------------------------------------------------
    def _transfer(self, reduced: dict[str, np.ndarray], count: int, elapsed: int) -> dict[str, xr.DataArray]:
        out: dict[str, xr.DataArray] = {}
        frac = reduced.get(self.fraction) if self.fraction else None
        for route in self.routes:
            scale, offset = self._conversion[route.dst]
            if frac is not None:  # mean of f*x over mean of f: the fraction-weighted time mean of x
                means = [np.divide(reduced[s], frac, out=np.zeros_like(frac), where=frac > 0) for s in route.src]
            else:
                means = [reduced[s] for s in route.src]
            weight = count if self.reduction == "accumulate" else 1.0
            values = [m * scale + offset * weight if (scale, offset) != (1.0, 0.0) else m for m in means]
            mapped = self._map(route, values, frac, elapsed)
            for name, value in zip(route.dst, mapped, strict=True):
                out[name] = xr.DataArray(value, dims=route.dst_dims, name=name, attrs={"units": route.units})
        return out

    def _map(self, route: FieldRoute, values: list[np.ndarray], frac, elapsed: int) -> list[np.ndarray]:
        regridder = route.regridder
        if regridder is None:
            return values
        try:
            if route.is_vector:
                return list(regridder.apply_vector(values[0], values[1]))
            if frac is not None:
                mapped, dst_frac = regridder.apply_fraction_weighted(values[0], frac)
                self._diagnose(route, values[0] * frac, np.nan_to_num(mapped) * dst_frac, elapsed)
                return [mapped]
            mapped = regridder.apply(values[0])
        except RegridError as exc:
            raise RegridError(f"{self.name}, field {route.src[0]!r}: {exc}") from None
        self._diagnose(route, values[0], mapped, elapsed)
        return [mapped]

    def _diagnose(self, route: FieldRoute, src: np.ndarray, dst: np.ndarray, elapsed: int) -> None:
        if route.integral_weights is None:
            return
        w_src, w_dst = route.integral_weights
        source = float(np.sum(np.where(w_src > 0, src, 0.0) * w_src))
        destination = float(np.sum(np.where(w_dst > 0, dst, 0.0) * w_dst))
        record = ConservationRecord(self.name, route.src[0], elapsed, source, destination)
        self.records.append(record)
        spec = self.spec.conservation
        if spec.check and record.relative_error > spec.rtol:
            raise RegridError(
                f"{self.name}: field {route.src[0]!r} at {elapsed} s: the area integral changed from "
                f"{record.source!r} to {record.destination!r} (relative error {record.relative_error:.3g} > "
                f"rtol {spec.rtol:g}); check the grids' bounds and masks, or the remap method"
            )

    # -- restarts ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        def arrays(payload):
            return None if payload is None else {k: da.values for k, da in payload.items()}

        return {
            "next_import": self.next_import,
            "reducers": {k: r.state_dict() for k, r in self.reducers.items()},
            "puts": [[end, arrays(p)] for end, p in sorted(self.puts.items())],
            "initial": arrays(self.initial),
        }

    def load_state_dict(self, state: dict) -> None:
        def payload(values):
            if values is None:
                return None
            units = {name: route.units for route in self.routes for name in route.dst}
            dims = {name: route.dst_dims for route in self.routes for name in route.dst}
            return {k: xr.DataArray(np.asarray(v), dims=dims[k], name=k, attrs={"units": units[k]})
                    for k, v in values.items()}

        self.next_import = int(state["next_import"])
        for name, reducer in self.reducers.items():
            reducer.load_state_dict(state["reducers"][name])
        self.puts = {int(end): payload(values) for end, values in state["puts"]}
        self.initial = payload(state["initial"])
