"""Downscaled fields of a fine-tuned checkpoint, exported by the AtmoRep component on a second grid.

A checkpoint of ``python -m atmorep_coupler.finetune`` has fields on a grid ``r`` times finer than the
model's (``FieldConfig.grid_refinement``), e.g. ``temperature_fine`` on the 64 x 128 grid of a 32 x 64 model.
Their network output is not a state the component carries: it is the departure of the fine field from
bilinear interpolation of a model field (``coarse_field`` of the checkpoint's downscaling record), in
units of that departure's training-period standard deviation per level. So, as in fine-tuning
(``downstream/pairs.py``), after every step the component predicts the fine field from its current window
with the fine field entirely hidden and every model-grid field visible, and exports

    fine = bilinear(coarse_field) + departure x departure_std

at the current time, per ensemble member (member ``k``: its own window and coarse field, the tail head
``perm[k mod M]`` of a permutation drawn from ``SeedSequence(seed, spawn_key=(2, step))``; one member: the
mean of the heads), on a second BMI grid: ``<field>`` is the mean over members and
``<field>_member_<k>`` each member (role ``diagnostic``, intent ``out``), in the units of the coarse field.
The prediction runs through :func:`~atmorep_coupler.model.prediction.predict_global` like every other
(one inference path), on the component's tiling scaled to the fine grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from atmorep_coupler.component.items import ComponentGrid, ExchangeItem, member_item
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.checkpoint import downscaling_records
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.regrid.grids import LatLonGrid
from atmorep_coupler.regrid.regridder import Regridder

__all__ = ["FineField", "FineGrid", "fine_heads"]


@dataclass(frozen=True)
class FineField:
    """One downscaled field: its config, the model field interpolated for its baseline, the levels of that
    field it takes (indices), and its departure scale ``[L]``."""

    config: FieldConfig
    coarse: str
    level_index: np.ndarray
    std: np.ndarray

    @property
    def name(self) -> str:
        return self.config.name


class FineGrid:
    """The fine fields of a checkpoint on their grid (module docs); None of them: :meth:`of` returns None."""

    def __init__(self, path: Path, fields: Sequence[FineField], latitudes: np.ndarray, longitudes: np.ndarray,
                 coarse: LatLonGrid) -> None:
        self.path, self.fields = path, list(fields)
        self.latitudes, self.longitudes = np.asarray(latitudes, dtype=np.float64), np.asarray(longitudes, np.float64)
        self.refinement = self.fields[0].config.grid_refinement
        self.horizontal = LatLonGrid.from_centers(self.latitudes, self.longitudes)
        # the interpolation fine-tuning subtracted (downstream/pairs.py: interpolators), built the same way
        self.bilinear = Regridder(coarse, self.horizontal, "bilinear", progress=False)
        self.members: dict[str, np.ndarray] = {}  # per field [member, L, lat, lon]; the member items are views

    @classmethod
    def of(cls, path: Path, state: Mapping, model: ModelConfig, predicted: Mapping[str, FieldConfig],
           latitudes: np.ndarray, longitudes: np.ndarray) -> FineGrid | None:
        """The fine fields of checkpoint ``path`` (``state``, ``model``) for a component on the grid
        ``latitudes x longitudes`` whose model-grid predicted fields are ``predicted``; refused with a
        :class:`CheckpointError` naming the file and field when a record does not fit."""
        records = downscaling_records(path, state, model)
        if not records:
            return None
        fields, grids = [], set()
        for f in model.fields:
            if f.name not in records:
                continue
            record = records[f.name]
            r = int(record["refinement"])
            lat, lon = np.asarray(record["latitudes"], np.float64), np.asarray(record["longitudes"], np.float64)
            if (r != f.grid_refinement or lat.size != r * len(latitudes) or lon.size != r * len(longitudes)):
                raise CheckpointError(
                    f"{path}: fine field {f.name!r} has a {lat.size}x{lon.size} grid, not {f.grid_refinement} times "
                    f"the component's {len(latitudes)}x{len(longitudes)}; use the checkpoint fine-tuned on this grid"
                )
            coarse = predicted.get(record["coarse_field"])
            if coarse is None:
                raise CheckpointError(
                    f"{path}: fine field {f.name!r} adds its departure to bilinear interpolation of field "
                    f"{record['coarse_field']!r}, which the model does not predict (predicted: {sorted(predicted)}); "
                    "fine-tune from a checkpoint that predicts the downscaled variable"
                )
            missing = [p for p in f.levels if p not in coarse.levels]
            std = np.asarray(record["departure_std"], dtype=np.float64)
            if missing or std.shape != (f.num_levels,):
                raise CheckpointError(f"{path}: fine field {f.name!r}: levels {list(f.levels)} or departure scale "
                                      f"{std.tolist()} do not fit field {coarse.name!r} (levels {list(coarse.levels)})")
            index = np.array([list(coarse.levels).index(p) for p in f.levels] or [0])
            fields.append(FineField(f, coarse.name, index, std))
            grids.add((lat.tobytes(), lon.tobytes()))
        if len(grids) != 1:
            raise CheckpointError(f"{path}: fine fields {list(records)} live on different grids; one fine grid is "
                                  "supported")
        coarse_grid = LatLonGrid.from_centers(np.asarray(latitudes), np.asarray(longitudes))
        return cls(path, fields, lat, lon, coarse_grid)

    @property
    def grids(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``predict_global``'s ``grids``: the fine grid's coordinates by refinement."""
        return {self.refinement: (self.latitudes, self.longitudes)}

    def declare(self, grid_table: dict[int, ComponentGrid], items: Mapping[str, ExchangeItem],
                members: int) -> tuple[list[ExchangeItem], dict[str, np.ndarray]]:
        """Add the fine grid(s) to ``grid_table`` (one per level set, ids after the existing ones) and return
        the exchange items (``<field>`` and ``<field>_member_<k>``, described like the coarse field's item in
        ``items``) and their arrays (the member items are views of one ``[member, L, lat, lon]`` stack)."""
        out, arrays = [], {}
        for f in self.fields:
            levels = tuple(float(p) for p in f.config.levels)
            same = [k for k, g in grid_table.items() if g.horizontal is self.horizontal and g.levels == levels]
            grid_id = same[0] if same else None
            if grid_id is None:
                grid_id = max(grid_table, default=-1) + 1
                grid_table[grid_id] = ComponentGrid(self.horizontal, levels=levels)
            like = items[f.coarse]
            common = dict(standard_name=like.standard_name, units=like.units, dtype="float32",
                          valid_range=like.valid_range, grid=grid_id, role="diagnostic")
            out.append(ExchangeItem(f.name, long_name=f"{like.long_name or f.coarse}, downscaled "
                                    f"{self.refinement} times finer (ensemble mean)", **common))
            out += [ExchangeItem(member_item(f.name, k), long_name=f"ensemble member {k} of {f.name}", **common)
                    for k in range(members)]
            self.members[f.name] = stack = np.zeros((members, *grid_table[grid_id].shape), dtype=np.float32)
            arrays[f.name] = np.zeros(grid_table[grid_id].shape, dtype=np.float32)
            arrays.update({member_item(f.name, k): stack[k] for k in range(members)})
        return out, arrays

    def windows(self, members: int, nt: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Empty windows ``[B, L, nt, r nlat, r nlon]`` of the fine fields: entirely hidden, as in fine-tuning."""
        shape = (self.latitudes.size, self.longitudes.size)
        return {f.name: torch.zeros(members, f.config.num_levels, nt, *shape, device=device) for f in self.fields}

    def masks(self, nt: int, nlat: int, nlon: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-field point masks on the model grid: every fine token hidden (the model-grid fields visible,
        as in fine-tuning's ``downscaling_masks``); targets only at the last time step (the export)."""
        hidden = torch.ones(nt, nlat, nlon, dtype=torch.bool)
        target = torch.zeros(nt, nlat, nlon, dtype=torch.bool)
        target[-1] = True
        return {f.name: hidden for f in self.fields}, {f.name: target for f in self.fields}

    def physical(self, f: FineField, departure: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """Normalised departures ``[B, L, r nlat, r nlon]`` and the coarse field's members ``[B, Lc, nlat,
        nlon]`` (its units) -> the fine field ``[B, L, r nlat, r nlon]``: bilinear baseline plus departure x scale."""
        coarse = np.asarray(coarse, dtype=np.float64)
        coarse = coarse if coarse.ndim == 4 else coarse[:, None]  # a surface field: one level
        baseline = self.bilinear.apply(coarse[:, f.level_index])
        return baseline + np.asarray(departure, dtype=np.float64) * f.std[None, :, None, None]


def fine_heads(seed: int, step: int, members: int, ensemble_size: int) -> list[int | None]:
    """Tail head of each member for the fine fields at ``step`` (None = the mean of all heads, one member)."""
    if members == 1:
        return [None]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, step)))
    perm = rng.permutation(ensemble_size)
    return [int(perm[n % perm.size]) for n in range(members)]
