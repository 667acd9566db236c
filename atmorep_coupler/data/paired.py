"""Paired high- and low-resolution data for downscaling: one fine run and its conservative coarsening.

``python -m atmorep_coupler.data make-paired`` runs the default dataset's dynamical core (dinosaur
Held–Suarez with the seasonal, warming forcing, :mod:`.default`) at a higher truncation (T42 on a
64 x 128, 2.8125° grid by default) and writes it in the ERA5 layout and units (``fine.zarr``, through
:func:`.default.generate`, so layout, CF attributes, forcings and statistics are the default data's).
It then writes ``coarse.zarr``: every gridded variable of the fine store conservatively regridded
(:class:`atmorep_coupler.regrid.Regridder`, latitude-band cells, so each coarse value is the exact
area-weighted mean of the fine cells it covers) to the default dataset's 5.625° grid (32 x 64, cell
centres at 0°, 5.625°, ...), the global series copied, with its own normalization statistics. The two
stores describe the same weather; the coarse one is what a model trained on the default data sees.

The pair is cached in the default dataset's cache folder under its own key
(``paired_<resolution>_<days>d_seed<seed>_<fingerprint>/``); nothing of the default dataset changes.

The 0°-centred grids do not nest in longitude: coarse cell ``j`` covers fine column ``2j`` and half
of columns ``2j - 1`` and ``2j + 1``. :func:`fine_origins` maps a coarse window to the fine window
starting at the same first point; it spans the same extent, half a fine cell further east.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from tqdm.auto import tqdm

from atmorep_coupler.config import to_dict
from atmorep_coupler.data.default import (
    COMPRESSOR,
    CoarseRunConfig,
    DefaultDataConfig,
    cache_dir,
    generate,
)
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.regrid import LatLonGrid, Regridder

__all__ = ["PairedDataConfig", "coarse_grid", "coarsen_store", "fine_origins", "generate_paired", "paired_path"]

#: Version of what :func:`generate_paired` writes; part of the cache key.
PAIRED_VERSION = 1
FINE, COARSE = "fine.zarr", "coarse.zarr"


@dataclass(frozen=True)
class PairedDataConfig:
    """Everything that determines a paired dataset (its hash names the cached folder)."""

    resolution: str = "T42"
    """Truncation of the fine run (T42: a 64 x 128 grid, twice the default's in each direction)."""
    days: float = 40.0
    """Days of 3-hourly output written."""
    spinup_days: float = 40.0
    """Days run from the seeded rest state before the first written time."""
    seed: int = 0
    """Seed of the initial perturbation."""
    output_hours: float = 3.0
    """Output interval in hours."""
    pressure_levels_hPa: tuple[float, ...] = (250.0, 500.0, 700.0, 850.0)
    """Pressure levels written (the default model's levels)."""
    sigma_levels: int = 8
    """Sigma levels of the dynamical core."""
    coarse_shape: tuple[int, int] = (32, 64)
    """Latitudes and longitudes of the coarse grid (the default dataset's 5.625° grid)."""

    def validate(self) -> None:
        if self.days <= 0 or self.spinup_days < 0:
            raise ConfigError(f"paired data: days must be > 0 and spinup_days >= 0, got {self.days}, {self.spinup_days}")
        if min(self.coarse_shape) < 2:
            raise ConfigError(f"paired data.coarse_shape: need at least 2 x 2 cells, got {list(self.coarse_shape)}")

    def truth_config(self) -> DefaultDataConfig:
        """The fine run as a default-data configuration (no coarse classical run beside it). A spin-up
        under the default's 100 days is allowed here: the pair is compared with itself, not with a climate."""
        return DefaultDataConfig(
            resolution=self.resolution,
            seed=self.seed,
            spinup_days=self.spinup_days,
            output_hours=self.output_hours,
            pressure_levels_hPa=tuple(self.pressure_levels_hPa),
            sigma_levels=self.sigma_levels,
            output_days=self.days,
            tiny=self.spinup_days < 100,
            block_days=max(1, min(10, math.ceil(self.days))),
            coarse=CoarseRunConfig(enabled=False),
        )

    def fingerprint(self) -> str:
        text = json.dumps({**to_dict(self), "paired_version": PAIRED_VERSION}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def paired_path(config: PairedDataConfig | None = None) -> Path:
    """The cache folder of ``config``'s pair (``fine.zarr`` and ``coarse.zarr`` inside)."""
    config = config or PairedDataConfig()
    return cache_dir() / f"paired_{config.resolution}_{config.days:g}d_seed{config.seed}_{config.fingerprint()}"


def coarse_grid(shape: tuple[int, int] = (32, 64)) -> LatLonGrid:
    """The default dataset's grid: ``nlat`` bands from the North Pole, cells centred on 0°, Δλ, ..."""
    nlat, nlon = shape
    return LatLonGrid(nlat, nlon, lon0=-180.0 / nlon)


def fine_origins(origins: np.ndarray, refinement: int) -> np.ndarray:
    """Origins ``[B, 3]`` (time, row, column) of coarse windows -> those of the fine windows that tile the
    same neighbourhood on a grid ``refinement`` times finer: same time, row ``r * row`` (latitude bands
    nest exactly), column ``r * column`` (the fine window's first centre is the coarse window's; with
    0°-centred grids its extent is shifted east by half a fine cell)."""
    origins = np.asarray(origins, dtype=np.int64)
    return np.stack([origins[:, 0], refinement * origins[:, 1], refinement * origins[:, 2]], axis=-1)


def coarsen_store(fine: str | os.PathLike, out: str | os.PathLike, shape: tuple[int, int] = (32, 64), *,
                  progress: bool = True) -> Path:
    """Write ``out``: ``fine`` conservatively regridded to the regular ``shape`` grid (latitude-band cells:
    exact area-weighted means), same variables, attributes, chunks by day and time axis; series copied."""
    src = zarr.open_group(str(fine), mode="r")
    fine_grid = LatLonGrid.from_centers(src["latitude"][...], src["longitude"][...])
    grid = coarse_grid(shape)
    if fine_grid.shape[0] % shape[0] or fine_grid.shape[1] % shape[1]:
        raise DataError(f"{fine}: grid {fine_grid.shape} is not a multiple of the coarse grid {shape}")
    regridder = Regridder(fine_grid, grid, "conservative", edges="parallels", progress=False)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    dst = zarr.open_group(str(out), mode="w", zarr_format=3)
    dst.attrs.update({**src.attrs, "comment": f"{src.attrs.get('comment', '')} Conservatively regridded "
                      f"(latitude-band cells) from {Path(fine).name} to a {shape[0]}x{shape[1]} grid."})
    coords = {"latitude": grid.lat, "longitude": grid.lon}
    names = [name for name, _ in src.arrays()]
    for name in tqdm(names, desc="coarsen", disable=not progress):
        arr = src[name]
        dims = list(arr.metadata.dimension_names)
        if name in coords:
            values = np.asarray(coords[name], dtype=arr.dtype)
            new = dst.create_array(name, shape=values.shape, dtype=arr.dtype, chunks=values.shape,
                                   dimension_names=dims, attributes=dict(arr.attrs))
            new[:] = values
            continue
        gridded = dims[-2:] == ["latitude", "longitude"]
        shape_out = (*arr.shape[:-2], *shape) if gridded else arr.shape
        chunks = (*arr.chunks[:-2], *shape) if gridded else arr.chunks
        new = dst.create_array(name, shape=shape_out, dtype=arr.dtype, chunks=chunks, dimension_names=dims,
                               compressors=COMPRESSOR if arr.dtype.kind == "f" and arr.ndim > 1 else "auto",
                               fill_value=arr.fill_value, attributes=dict(arr.attrs))
        if not gridded:
            new[...] = arr[...]
            continue
        step = arr.chunks[0]
        for t in range(0, arr.shape[0], step):
            block = arr[t:t + step].astype(np.float64)
            new[t:t + step] = regridder.apply(block).astype(arr.dtype)
    if "generator" in src:
        dst.create_group("generator").attrs.update(dict(src["generator"].attrs))
    return out


def generate_paired(config: PairedDataConfig | None = None, out: str | os.PathLike | None = None, *,
                    progress: bool = True) -> tuple[Path, Path]:
    """Generate (or reuse) the pair; returns the paths of the fine and the coarse store."""
    from atmorep_coupler.data.statistics import compute_normalization
    from atmorep_coupler.data.store import open_store

    config = config or PairedDataConfig()
    config.validate()
    folder = Path(out).expanduser() if out is not None else paired_path(config)
    fine, coarse = folder / FINE, folder / COARSE
    done = folder / "complete.json"
    text = json.dumps({**to_dict(config), "paired_version": PAIRED_VERSION}, sort_keys=True, default=str)
    if done.exists() and done.read_text() == text:
        return fine, coarse
    folder.mkdir(parents=True, exist_ok=True)
    generate(config.truth_config(), fine, progress=progress)
    coarsen_store(fine, coarse, config.coarse_shape, progress=progress)
    store = open_store(coarse)
    compute_normalization(store, progress=progress).save(store)
    done.write_text(text)
    return fine, coarse
