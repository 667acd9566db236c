"""Hierarchical Monte-Carlo sampling of space-time neighbourhoods from an ERA5-layout store.

Per batch: draw ``ceil(B / samples_per_window)`` time windows, then ``samples_per_window``
neighbourhoods (places) per window -- the "unbiased hierarchical Monte Carlo sampling" of AtmoRep,
which amortises each time-window read over several places. Every batch is a pure function of
``(seed, stream, rank, index)``, so a stream can be resumed at any batch index and replayed bit for bit.

Where the reference went wrong, and what is done here:

- **Latitude**: a neighbourhood's start row is drawn with probability proportional to the area
  of the grid band at its centre (``sin(north edge) - sin(south edge)``), i.e. centres are uniform on
  the sphere, not in latitude (the v2 sampler over-sampled the poles by ~1/cos(lat)). Works for
  regular and Gaussian grids alike.
- **Score weights**: sampling already weights rows (by how often windows cover them), so a score
  over sampled windows must not weight by area again. ``Batch.row_weight`` is each point's weight
  ``area(row) / P(row in a window)``: over the sampling distribution every row then counts in
  proportion to its area exactly, once (``point_weights``; ``model.metrics`` uses it).
- **Poles**: windows never cross a pole (rows are clamped to the grid), so there is no mirrored or
  invented data; every row, polar rows included, is covered by some window.
- **Longitude**: uniform start column, periodic (indices wrap across 0°/360°) on global grids.
- **Record ends**: only windows whose time steps are consecutive (regular spacing, no gap) and
  lie inside both the record and the configured period are drawn; nothing wraps to the other end.
- **Reproducibility**: randomness comes from ``SeedSequence(seed, spawn_key=(stream, rank,
  index))`` -- disjoint for each rank; loader workers take disjoint batch indices of their rank, so
  the stream does not depend on the number of workers. The stream position is one integer.
- **Memory**: a window is read as a bounded box: when the global slab of a time window is small
  (``max_slab_bytes``, e.g. a 5.625° grid) it is read once and cropped; otherwise each neighbourhood
  is read on its own. Never more than one window's data per field (0.25° stores included).

Fields are normalized with the store's statistics (``Normalization``; global or local per field) at
each time step, interpolated linearly in time between mid-month values (``month_position``).
Input-only fields may contain NaN (e.g. SST over land): they become 0, the
normalized mean (:data:`NAN_FILL`); NaN in a predicted field is a ``DataError``. :meth:`NeighbourhoodSampler.record`
says what inference must repeat (units, missing values and their fill, the time step); checkpoints keep it.

Derived fields: ``FieldConfig.transform`` names a reader registered with :func:`register_transform`
that replaces ``store.read`` for that field (same signature); it is normalized with the statistics of
``FieldConfig.variable``. A parametrised transform ``family:argument`` calls the factory registered with
:func:`register_transform_family` with the argument. Built in: ``coarse:T<N>``, the truth conservatively
coarsened to the classical model's Gaussian grid and back (:mod:`atmorep_coupler.data.conditioning`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from atmorep_coupler.data.conditioning import coarse_reader
from atmorep_coupler.data.normalization import month_position
from atmorep_coupler.data.store import ERA5Store
from atmorep_coupler.data.tokens import detokenize, token_metadata, tokenize
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.timeutil import format_duration

__all__ = [
    "batch_loader",
    "Batch",
    "BatchStream",
    "NeighbourhoodSampler",
    "register_transform",
    "register_transform_family",
    "row_areas",
    "transform_reader",
    "FieldLayout",
    "NeighbourhoodLayout",
    "NAN_FILL",
    "TRAIN_STREAM",
    "VALIDATION_STREAM",
]



class FieldLayout(Protocol):
    """What the sampler reads of one field's configuration. :class:`atmorep_coupler.model.config.FieldConfig`
    is one; a protocol, because the model is built on the data (the model imports this package, not the
    other way round)."""

    @property
    def name(self) -> str: ...
    @property
    def variable(self) -> str: ...
    @property
    def levels(self) -> Sequence[float]: ...
    @property
    def num_levels(self) -> int: ...
    @property
    def token_size(self) -> tuple[int, int, int]: ...
    @property
    def normalization(self) -> Literal["global", "local"]: ...
    @property
    def transform(self) -> str | None: ...
    @property
    def predicted(self) -> bool: ...


class NeighbourhoodLayout(Protocol):
    """The fields of a neighbourhood and its extent: :class:`atmorep_coupler.model.config.ModelConfig` is one."""

    @property
    def fields(self) -> Sequence[FieldLayout]: ...
    @property
    def neighbourhood(self) -> tuple[int, int, int]: ...
    def field(self, name: str) -> FieldLayout: ...


TRAIN_STREAM, VALIDATION_STREAM = 0, 1
NAN_FILL = "normalised_mean"
"""How missing values (NaN) of input-only fields enter the model: as 0, the normalized mean. Checkpoint files
record this value (:meth:`NeighbourhoodSampler.record`), so it keeps the spelling it was first written with,
which checkpoints trained before the package settled on US spelling hold."""

#: ``reader(store, variable, *, time, levels, lat, lon) -> array`` like ``ERA5Store.read``.
Reader = Callable[..., np.ndarray]
_TRANSFORMS: dict[str, Reader] = {}
_FAMILIES: dict[str, Callable[[str], Reader]] = {}


def register_transform(name: str, reader: Reader) -> None:
    """Make ``reader`` available to fields with ``transform: <name>``."""
    _TRANSFORMS[name] = reader


def register_transform_family(family: str, factory: Callable[[str], Reader]) -> None:
    """Make ``factory(argument)`` the reader of fields with ``transform: <family>:<argument>`` (or
    ``<family>``, argument ``""``)."""
    _FAMILIES[family] = factory


@functools.lru_cache(maxsize=64)
def _family_reader(family: str, argument: str) -> Reader:
    return _FAMILIES[family](argument)


def transform_reader(name: str) -> Reader:
    """The reader of ``transform: <name>``; :class:`ConfigError` if nothing is registered under it."""
    if name in _TRANSFORMS:
        return _TRANSFORMS[name]
    family, _, argument = name.partition(":")
    if family not in _FAMILIES:
        raise ConfigError(f"transform {name!r} is not registered (registered: {sorted(_TRANSFORMS)}, "
                          f"families: {[f + ':<argument>' for f in sorted(_FAMILIES)]})")
    return _family_reader(family, argument)


register_transform_family("coarse", coarse_reader)


@dataclass
class Batch:
    """One batch of neighbourhoods: clean normalized tokens and metadata per field, plus coordinates."""

    tokens: dict[str, torch.Tensor]  # [B, L, T, Y, X, t, y, x]
    meta: dict[str, torch.Tensor]  # [B, L, T, Y, X, len(META_FEATURES)]
    latitude: torch.Tensor  # [B, Y*y] degrees north
    longitude: torch.Tensor  # [B, X*x] degrees east, in [0, 360)
    time: torch.Tensor  # [B, T*t] int64 nanoseconds since 1970-01-01
    origin: torch.Tensor  # [B, 3] int64: time index, row, column of the first grid point
    row_weight: torch.Tensor  # [B, Y*y] score weight of the points of each row (NeighbourhoodSampler.point_weights)

    def to(self, device: torch.device | str) -> Batch:
        move = lambda d: {k: v.to(device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return Batch(move(self.tokens), move(self.meta), self.latitude.to(device), self.longitude.to(device),
                     self.time.to(device), self.origin.to(device), self.row_weight.to(device))


def row_areas(latitudes: np.ndarray) -> np.ndarray:
    """Area of each latitude row's band on the unit sphere per unit longitude: bounds midway between
    neighbouring latitudes and at the poles, ``|sin(north bound) - sin(south bound)|`` (WeatherBench 2's
    latitude weights before normalization)."""
    lat = np.deg2rad(latitudes)
    mid = 0.5 * (lat[1:] + lat[:-1])
    edges = np.concatenate([[np.sign(lat[0]) * np.pi / 2], mid, [np.sign(lat[-1]) * np.pi / 2]])
    return np.abs(np.sin(edges[:-1]) - np.sin(edges[1:]))


class NeighbourhoodSampler:
    """Draws batches of neighbourhoods of all fields of ``config`` from ``store`` (see module docs)."""

    def __init__(self, store: ERA5Store, config: NeighbourhoodLayout, *, batch_size: int,
                 start: dt.datetime | None = None, end: dt.datetime | None = None,
                 samples_per_window: int = 4, seed: int = 0, stream: int = TRAIN_STREAM,
                 rank: int = 0, max_slab_bytes: int = 64 * 2**20, history_steps: int = 0):
        """``history_steps``: time steps before each drawn window that must lie in the period and the record
        too, without a gap (a rollout's earlier windows, :mod:`atmorep_coupler.training.rollout`)."""
        self.store, self.config = store, config
        self.batch_size, self.samples_per_window = batch_size, max(1, min(samples_per_window, batch_size))
        self.seed, self.stream, self.rank = seed, stream, rank
        self.max_slab_bytes = max_slab_bytes
        self.extent = config.neighbourhood  # time steps, rows, columns
        self.norm = store.normalization
        self.history_steps = history_steps
        for field in config.fields:
            self._check_field(field)
        self.time_starts = self._valid_time_starts(start, end)
        self.row_starts, self.row_probability = self._row_distribution()
        self.point_weights = self._point_weights()
        nlon, nx = store.longitudes.size, self.extent[2]
        self.periodic = store.is_global
        if nx > nlon:
            raise ConfigError(f"neighbourhood of {nx} longitudes exceeds the store's {nlon}")
        self.col_starts = nlon if self.periodic else nlon - nx + 1

    # ------------------------------------------------------------------------------ set-up checks
    def _check_field(self, field: FieldLayout) -> None:
        where = f"store {str(self.store.path)!r}: field {field.name!r}"
        if field.transform is not None:
            try:
                transform_reader(field.transform)
            except ConfigError as exc:
                raise ConfigError(f"field {field.name!r}: {exc}") from None
        var = self.store.resolve(field.variable)
        if bool(field.levels) != self.store.has_levels(var):
            raise DataError(f"{where}: variable {var!r} {'has' if self.store.has_levels(var) else 'has no'} "
                            f"pressure levels but the config gives levels {list(field.levels)}")
        if field.levels:
            self.store.level_indices(var, field.levels)  # raises naming a missing level
        self.norm.mean(var, [0], mode=field.normalization)  # raises if no statistics for var
        self.store.check_units(var, statistics=self.norm)  # the units the statistics (and the model) have

    def _valid_time_starts(self, start: dt.datetime | None, end: dt.datetime | None) -> np.ndarray:
        """First time indices of windows inside [start, end] and the record with no gap, their
        ``history_steps`` earlier steps included."""
        times, nt, before = self.store.times, self.extent[0] + self.history_steps, self.history_steps
        lo = 0 if start is None else int(np.searchsorted(times, np.datetime64(start, "ns"), side="left"))
        hi = times.size if end is None else int(np.searchsorted(times, np.datetime64(end, "ns"), side="right"))
        candidates = np.arange(lo, hi - nt + 1)
        if candidates.size:
            step = np.median(np.diff(times)) if times.size > 1 else np.timedelta64(0, "ns")
            regular = times[candidates + nt - 1] - times[candidates] == (nt - 1) * step
            candidates = candidates[regular] + before
        if not candidates.size:
            raise DataError(
                f"store {str(self.store.path)!r}: no window of {nt} consecutive time steps"
                + (f" (the neighbourhood's {self.extent[0]} and {before} before it for rollout.max_steps)"
                   if before else "")
                + f" inside {start} .. {end} (store: {times[0] if times.size else '-'} .. "
                f"{times[-1] if times.size else '-'}); widen the period or shorten the neighbourhood"
                + (" or lower rollout.max_steps" if before else "")
            )
        return candidates

    def _row_distribution(self) -> tuple[np.ndarray, np.ndarray]:
        """Start rows and their probabilities: proportional to the area at the window centre."""
        nlat, ny = self.store.latitudes.size, self.extent[1]
        if ny > nlat:
            raise ConfigError(f"neighbourhood of {ny} latitudes exceeds the store's {nlat}")
        starts = np.arange(nlat - ny + 1)
        area = row_areas(self.store.latitudes)
        weight = 0.5 * (area[starts + (ny - 1) // 2] + area[starts + ny // 2])
        return starts, weight / weight.sum()

    def _point_weights(self) -> np.ndarray:
        """Score weight of a point in each row ``[nlat]``: its band area divided by the probability that a
        drawn window covers the row, normalized to mean 1. The expected weight of a row over the
        sampling distribution is then proportional to its area: area weighting applied once."""
        ny = self.extent[1]
        cover = np.zeros(self.store.latitudes.size)
        np.add.at(cover, self.row_starts[:, None] + np.arange(ny), np.repeat(self.row_probability[:, None], ny, 1))
        weight = row_areas(self.store.latitudes) / cover
        return weight / weight.mean()

    def record(self) -> dict:
        """What inference must treat as training did, for the checkpoint: the data's time step (ISO 8601)
        and per field its store variable, units, whether the data held missing values and how they were
        filled (None: refused, as in predicted fields)."""
        step = np.median(np.diff(self.store.times)) / np.timedelta64(1, "s") if self.store.times.size > 1 else 0.0
        fields = {}
        for field in self.config.fields:
            var = self.store.resolve(field.variable)
            fields[field.name] = {
                "variable": var, "units": self.norm.units(var), "predicted": field.predicted,
                "missing_in_training": self.norm.has_missing(var),
                "missing_filled_with": None if field.predicted else NAN_FILL,
            }
        return {"time_step": format_duration(dt.timedelta(seconds=float(step))), "fields": fields}

    # ------------------------------------------------------------------------------ sampling
    def __len__(self) -> int:  # number of distinct time windows, for information
        return self.time_starts.size

    def draw(self, index: int) -> np.ndarray:
        """Origins ``[B, 3]`` (time index, row, column) of batch ``index``, grouped by time window."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.stream, self.rank, index)))
        B, per = self.batch_size, self.samples_per_window
        windows = rng.choice(self.time_starts, size=math.ceil(B / per))
        t0 = np.repeat(windows, per)[:B]
        rows = rng.choice(self.row_starts, size=B, p=self.row_probability)
        cols = rng.integers(0, self.col_starts, size=B)
        return np.stack([t0, rows, cols], axis=-1).astype(np.int64)

    def batch(self, index: int) -> Batch:
        return self.read(self.draw(index))

    def read(self, origins: np.ndarray) -> Batch:
        """Read, normalize and tokenise the neighbourhoods starting at ``origins [B, 3]``."""
        nt, ny, nx = self.extent
        store = self.store
        times = store.times[origins[:, :1] + np.arange(nt)]  # [B, nt]
        rows = origins[:, 1:2] + np.arange(ny)  # [B, ny]
        cols = origins[:, 2:3] + np.arange(nx)
        if self.periodic:
            cols = cols % store.longitudes.size
        lat, lon = store.latitudes[rows], store.longitudes[cols]
        tokens, meta = {}, {}
        for field in self.config.fields:
            cube = self._read_field(field, origins[:, 0], rows, cols)  # [B, L, nt, ny, nx]
            tokens[field.name] = torch.from_numpy(tokenize(cube, field.token_size).copy())
            meta[field.name] = torch.from_numpy(token_metadata(times, lat, lon, field.levels, field.token_size))
        return Batch(tokens, meta, torch.from_numpy(lat.astype(np.float32)), torch.from_numpy(lon.astype(np.float32)),
                     torch.from_numpy(times.astype("datetime64[ns]").astype(np.int64)), torch.from_numpy(origins),
                     torch.from_numpy(self.point_weights[rows].astype(np.float32)))

    def _read_field(self, field: FieldLayout, t0: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Normalized cube ``[B, L, nt, ny, nx]`` of one field, window by window."""
        nt, ny, nx = self.extent
        B = t0.size
        store, var = self.store, self.store.resolve(field.variable)
        reader = transform_reader(field.transform) if field.transform else ERA5Store.read  # same signature
        read = functools.partial(reader, store, var)
        levels = list(field.levels) or None
        level_idx = self.norm.level_index(field.levels) if field.levels else None
        out = np.empty((B, field.num_levels, nt, ny, nx), dtype=np.float32)
        series = "latitude" not in store.dataset[var].dims
        slab_bytes = 4 * nt * field.num_levels * store.latitudes.size * store.longitudes.size
        for start in np.unique(t0):
            members = np.flatnonzero(t0 == start)
            time = slice(int(start), int(start) + nt)
            months = month_position(store.times[time])
            if series:
                values = self.norm.normalize(var, read(time=time), months, mode=field.normalization)
                out[members] = values[None, None, :, None, None]
                continue
            slab = read(time=time, levels=levels) if slab_bytes <= self.max_slab_bytes else None
            for b in members:
                if slab is None:
                    window = read(time=time, levels=levels, lat=slice(int(rows[b, 0]), int(rows[b, -1]) + 1),
                                  lon=cols[b])
                else:
                    window = slab[..., rows[b][:, None], cols[b][None, :]]
                out[b] = self._normalize(field, var, window, months, level_idx, rows[b], cols[b],
                                         when=str(store.times[int(start)]))
        return out

    def denormalize(self, name: str, tokens: torch.Tensor, origins: np.ndarray, *,
                    mode: str | None = None) -> np.ndarray:
        """Tokens ``[B, L, T, Y, X, t, y, x]`` of field ``name`` at ``origins`` back in store units
        (with the field's normalization, or ``mode`` 'global'/'local')."""
        field = self.config.field(name)
        var = self.store.resolve(field.variable)
        cube = detokenize(tokens.detach().cpu().numpy())  # [B, L, nt, ny, nx]
        nt, ny, nx = self.extent
        out = np.empty(cube.shape, dtype=np.float32)
        level_idx = self.norm.level_index(field.levels) if field.levels else None
        for b, (t0, row, col) in enumerate(np.asarray(origins)):
            months = month_position(self.store.times[t0:t0 + nt])
            rows, cols = row + np.arange(ny), (col + np.arange(nx)) % self.store.longitudes.size
            x = cube[b].transpose(1, 0, 2, 3) if field.levels else cube[b, 0]
            x = self.norm.denormalize(var, x, months, level_idx, rows, cols, mode=mode or field.normalization)
            out[b] = x.transpose(1, 0, 2, 3) if field.levels else x[None]
        return tokenize(out, field.token_size)

    def _normalize(self, field: FieldLayout, var: str, window: np.ndarray, months: np.ndarray,
                   level_idx: np.ndarray | None, rows: np.ndarray, cols: np.ndarray, when: str) -> np.ndarray:
        """``[nt, (L), ny, nx]`` physical -> ``[L, nt, ny, nx]`` normalized; NaN policy per field."""
        x = self.norm.normalize(var, window, months, level_idx, rows, cols, mode=field.normalization)
        x = x if field.levels else x[:, None]
        if np.isnan(x).any():
            if field.predicted:
                raise DataError(
                    f"store {str(self.store.path)!r}: predicted field {field.name!r} has NaN in the window "
                    f"from {when}, rows {rows[0]}..{rows[-1]}, columns {cols[0]}..{cols[-1]}; "
                    "predicted fields must be complete (make it input-only or fill the gaps)"
                )
            x = np.nan_to_num(x, nan=0.0)
        return x.transpose(1, 0, 2, 3)


class BatchStream(torch.utils.data.IterableDataset):
    """An endless stream of ``(index, batch, masked)`` from ``start`` on, for a ``DataLoader`` with
    ``batch_size=None``. Worker ``w`` of ``W`` produces indices ``start + w + k W``; the loader's
    round-robin then yields them in order, so the stream is the same for any number of workers."""

    def __init__(self, sampler: NeighbourhoodSampler, transform: Callable | None = None, start: int = 0,
                 stop: int | None = None, step: int = 1):
        super().__init__()
        self.sampler, self.transform = sampler, transform
        self.start, self.stop, self.step = start, stop, step

    def __iter__(self) -> Iterator[tuple[int, Batch, object]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + worker * self.step
        while self.stop is None or index < self.stop:
            batch = self.sampler.batch(index)
            key = (self.sampler.stream, self.sampler.rank, index)
            masked = self.transform(batch.tokens, self.sampler.seed, key) if self.transform else None
            yield index, batch, masked
            index += workers * self.step


def batch_loader(stream: BatchStream, num_workers: int, *, pin_memory: bool = False) -> Iterator:
    """Iterate ``stream`` in this process (``num_workers=0``) or through a ``DataLoader`` whose workers
    start by ``forkserver``: forking a process that already runs JAX or torch threads can deadlock."""
    if num_workers == 0:
        return iter(stream)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                            multiprocessing_context="forkserver", pin_memory=pin_memory))
