"""Turn a validated coupling config into objects: grids, component configs, regridders, exchanges.

Kept apart from the run loop so that each piece is built in one place (and errors name the YAML key
that caused them). Regridders are built once per distinct (source grid and mask, destination grid,
method, fallback, weight file) and shared by every coupling that needs the same mapping.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atmorep_coupler.config import read_yaml_file
from atmorep_coupler.coupling.exchange import Exchange, FieldRoute, area_integral_weights
from atmorep_coupler.coupling.schema import CoupledRunConfig, CouplingSpec, GridSpec, RunSpec, check_trusted_kind
from atmorep_coupler.errors import ConfigError, RegridError
from atmorep_coupler.regrid.grids import GaussianGrid, Grid, LatLonGrid

__all__ = ["build_grid", "resolve_kind", "component_config", "check_component_grid", "RegridderCache", "build_exchange"]

#: Largest centre difference (degrees) at which a component's grid counts as the configured one.
GRID_TOLERANCE_DEG = 1e-6


def build_grid(name: str, spec: GridSpec) -> Grid:
    """The grid ``grids.<name>`` describes, with its static mask applied."""
    where = f"grids.{name}"
    try:
        if spec.type == "regular_latlon" and (spec.poles or spec.first_lon is not None):
            grid = LatLonGrid.from_centers(*regular_centers(spec))
        elif spec.type == "regular_latlon":
            grid = LatLonGrid(spec.nlat, spec.nlon, lat_order=spec.lat_order or "descending")
        elif spec.type == "gaussian":
            grid = GaussianGrid(spec.nlat, spec.nlon, lat_order=spec.lat_order or "descending")
        else:
            grid = Grid.from_scrip(spec.file)
    except (RegridError, OSError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if spec.mask is not None:
        grid = grid.with_mask(_read_mask(where, spec.mask.file, spec.mask.variable, grid))
    return grid


def regular_centers(spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (in ``lat_order``) and longitudes of a ``regular_latlon`` grid spec."""
    if spec.poles:
        lat = np.linspace(-90.0, 90.0, spec.nlat)
    else:
        lat = -90.0 + (np.arange(spec.nlat) + 0.5) * (180.0 / spec.nlat)
    dlon = 360.0 / spec.nlon
    first = 0.5 * dlon if spec.first_lon is None else spec.first_lon
    lon = first + np.arange(spec.nlon) * dlon
    return (lat if spec.lat_order == "ascending" else lat[::-1]), lon


def grid_spec_of(horizontal) -> dict[str, Any] | None:
    """The ``grids`` entry that describes a component's horizontal grid, or None if no generated one does
    (a curvilinear grid, an irregular spacing): for messages that tell the user what to write."""
    lat, lon = np.asarray(horizontal.center_lat), np.asarray(horizontal.center_lon)
    if lat.ndim != 2 or not (np.all(lat == lat[:, :1]) and np.all(lon == lon[:1, :])) or lat.shape[0] < 2:
        return None
    rows, cols = lat[:, 0], lon[0, :]
    order = "descending" if rows[0] > rows[-1] else "ascending"
    nlat, nlon = rows.size, cols.size
    candidates = [GridSpec("regular_latlon", nlat, nlon, order, poles=poles, first_lon=float(cols[0]))
                  for poles in (False, True)]
    if nlat % 2 == 0:
        candidates.append(GridSpec("gaussian", nlat, nlon, order))
    for spec in candidates:
        grid = build_grid("candidate", spec)
        dlon = (grid.center_lon - lon + 180.0) % 360.0 - 180.0
        if np.allclose(grid.center_lat, lat, atol=GRID_TOLERANCE_DEG) and np.allclose(dlon, 0.0, atol=GRID_TOLERANCE_DEG):
            keys = {"type": spec.type, "nlat": nlat, "nlon": nlon, "lat_order": order}
            return keys | ({"poles": spec.poles, "first_lon": spec.first_lon} if spec.type == "regular_latlon" else {})
    return None


def _read_mask(where: str, file: Path, variable: str, grid: Grid) -> np.ndarray:
    import xarray as xr

    if not file.exists():
        raise ConfigError(f"{where}.mask.file: {file} not found")
    opener = xr.open_zarr if file.is_dir() or file.suffix == ".zarr" else xr.open_dataset
    with opener(file) as ds:
        if variable not in ds.variables:
            raise ConfigError(f"{where}.mask.variable: {variable!r} is not in {file} (it has {sorted(ds.variables)})")
        var = ds[variable]
        values = np.asarray(var.values)
        lat_name = next((c for c in ("latitude", "lat") if c in var.coords and var[c].ndim == 1), None)
        lat = np.asarray(var[lat_name].values) if lat_name else None
    if values.shape != grid.shape:
        raise ConfigError(f"{where}.mask: {variable!r} in {file} has shape {values.shape}, the grid {grid.shape}")
    if lat is not None and not np.allclose(lat, grid.center_lat[:, 0], atol=GRID_TOLERANCE_DEG):
        raise ConfigError(
            f"{where}.mask: the latitudes of {variable!r} in {file} differ from the grid's; check lat_order"
        )
    return np.nan_to_num(values) != 0


def resolve_kind(name: str, kind: str, allow_imports: Sequence[str] = ()):
    """The component class of ``components.<name>.kind`` (registry name or ``pkg.module:Class``), imported
    only once :func:`check_trusted_kind` trusts it."""
    from atmorep_coupler.component.base import Component

    path = check_trusted_kind(f"components.{name}.kind", kind, allow_imports)
    module_name, _, class_name = path.partition(":")
    _check_own_components(name, kind, module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"components.{name}.kind: cannot import {module_name!r} for {kind!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"components.{name}.kind: {path!r} is not a Component subclass")
    return cls


#: The project's own top-level ``components`` folder (beside the package): the built-in kinds live there.
OWN_COMPONENTS = Path(__file__).resolve().parents[2] / "components"


def _check_own_components(name: str, kind: str, module_name: str) -> None:
    """``components`` is a common name: another installed distribution's package of that name, earlier on
    ``sys.path``, would shadow the project's folder and run its code for a built-in kind. Refuse it before
    anything of it is imported (``find_spec`` of a top-level package only locates it)."""
    if module_name.partition(".")[0] != "components":
        return
    spec = importlib.util.find_spec("components")
    found = Path(spec.origin).resolve().parent if spec is not None and spec.origin else None
    if found != OWN_COMPONENTS:
        raise ConfigError(
            f"components.{name}.kind: {kind!r} would import {module_name!r} from {found}, not from this project's "
            f"{OWN_COMPONENTS}: another package named 'components' shadows it on sys.path; uninstall it or run "
            "from the project's environment"
        )


def component_config(name: str, config: CoupledRunConfig, base_dir: Path, allow_imports: Sequence[str] = (),
                     ) -> tuple[str, dict[str, Any], Path, tuple[str, str]]:
    """``(class path, config mapping, folder for relative paths, (origin, key path))`` of component
    ``name``; the last pair is what the component's config errors name: the file the config came from,
    or the key path of the inline mapping in the coupling YAML (``components.sst.config``).

    The clock keys (``name``, ``start``, ``end``, ``calendar``, ``time_step``) come from the coupling
    YAML and may not be set in the component's own config. ``components.<id>.device`` and
    ``.ensemble`` are passed on (the config class must have these keys); ``run.seed`` and
    ``run.device`` are defaults for config classes with a ``seed`` or ``device`` key.
    """
    spec = config.components[name]
    where = f"components.{name}.config"
    cls = resolve_kind(name, spec.kind, allow_imports)
    if isinstance(spec.config, Path):
        if not spec.config.is_file():
            raise ConfigError(f"{where}: file {spec.config} not found")
        mapping = read_yaml_file(spec.config)
        folder = spec.config.parent
        where = f"{spec.config}"
        source = (where, "")
    else:
        mapping, folder = dict(spec.config or {}), base_dir
        source = ("", where)
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: a component config must be a mapping, got {type(mapping).__name__}")
    run: RunSpec = config.run
    clock = {"name": name, "start": run.start, "end": run.end, "calendar": run.calendar, "time_step": spec.timestep}
    for key in clock:
        if key in mapping:
            raise ConfigError(
                f"{where}: key {key!r} is set by the coupling YAML (run.start/end/calendar, "
                f"components.{name}.timestep, the component id); remove it here"
            )
    accepted = {f.name for f in dataclasses.fields(cls.config_class)}
    explicit = {"device": spec.device, "ensemble": dataclasses.asdict(spec.ensemble) if spec.ensemble else None}
    explicit = {key: value for key, value in explicit.items() if value is not None}
    for key in explicit:
        if key not in accepted:
            raise ConfigError(f"components.{name}.{key}: {cls.__name__} has no {key!r} setting")
    defaults = {key: value for key, value in {"seed": run.seed, "device": run.device}.items() if key in accepted}
    mapping = {**defaults, **mapping, **explicit, **clock}
    return f"{cls.__module__}:{cls.__qualname__}", mapping, folder, source


def component_grid_names(name: str, spec: Any, grids: Mapping[str, Grid], component_grids: Mapping[int, Any]
                         ) -> dict[int, str]:
    """The configured grid of each horizontal grid of component ``name`` (by its grid id): ``spec.grid`` or
    the first of ``spec.extra_grids`` it matches (:func:`check_component_grid`); a grid none matches is a
    :class:`ConfigError` naming the candidates."""
    out = {}
    for grid_id, grid in component_grids.items():
        if grid.horizontal is None:
            continue
        if spec.grid is None:
            raise ConfigError(f"components.{name}.grid: component {name!r} has gridded fields; name its grid")
        candidates = [spec.grid, *spec.extra_grids]
        errors = []
        for candidate in candidates:
            try:
                check_component_grid(name, candidate, grids[candidate], grid.horizontal)
            except ConfigError as exc:
                errors.append(str(exc))
                continue
            out[grid_id] = candidate
            break
        else:
            shapes = {tuple(g.horizontal.shape) for g in component_grids.values() if g.horizontal is not None}
            if len(candidates) == 1 and len(shapes) == 1:
                raise ConfigError(errors[0])
            raise ConfigError(
                f"components.{name}: its grid {grid_id} ({tuple(grid.horizontal.shape)}) is none of {candidates}: "
                + "; ".join(errors) + f"; list each grid of the component in components.{name}.grid or .extra_grids"
            )
    for k, extra in enumerate(getattr(spec, "extra_grids", ())):
        if extra not in out.values():
            shapes = sorted({tuple(g.horizontal.shape) for g in component_grids.values() if g.horizontal is not None})
            raise ConfigError(
                f"components.{name}.extra_grids[{k}]: component {name!r} has no field on grid {extra!r} "
                f"{tuple(grids[extra].shape)} (its grids: {shapes}); configure it for fields there (the AtmoRep "
                "component exports downscaled fields on a finer grid only from a fine-tuned checkpoint, the "
                "finetuned.pt of python -m atmorep_coupler.finetune) or remove the grid from extra_grids"
            )
    return out


def check_component_grid(name: str, grid_name: str, grid: Grid, horizontal) -> None:
    """The component's own horizontal grid must be the configured one (same cells, same order)."""
    where = f"components.{name}.grid"
    spec = grid_spec_of(horizontal)
    hint = "" if spec is None else "; the component's grid is " + _flow(spec)
    if tuple(horizontal.shape) != tuple(grid.shape):
        raise ConfigError(
            f"{where}: component {name!r} has a grid of shape {tuple(horizontal.shape)}, grid {grid_name!r} "
            f"has {tuple(grid.shape)}{hint}"
        )
    dlat = np.abs(np.asarray(horizontal.center_lat) - grid.center_lat)
    dlon = np.abs((np.asarray(horizontal.center_lon) - grid.center_lon + 180.0) % 360.0 - 180.0)
    dlon = np.where(np.abs(grid.center_lat) >= 90.0, 0.0, dlon)  # longitude is arbitrary at a pole
    if dlat.max() > GRID_TOLERANCE_DEG or dlon.max() > GRID_TOLERANCE_DEG:
        j, i = np.unravel_index(int(np.argmax(np.maximum(dlat, dlon))), grid.shape)
        raise ConfigError(
            f"{where}: the cell centres of component {name!r} differ from grid {grid_name!r}; first at (j, i) = "
            f"({j}, {i}): component ({horizontal.center_lat[j, i]:.6f}, {horizontal.center_lon[j, i]:.6f}), "
            f"grid ({grid.center_lat[j, i]:.6f}, {grid.center_lon[j, i]:.6f}) (lat, lon); check lat_order and sizes"
            f"{hint}"
        )


def _flow(mapping: Mapping[str, Any]) -> str:
    """A mapping as one line of flow-style YAML: ``{type: regular_latlon, nlat: 121, ...}``."""
    text = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in mapping.items())
    return "{" + text + "}"


class RegridderCache:
    """Regridders by what determines their weights, built on first use."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}

    def get(self, where: str, spec: CouplingSpec, src: tuple[str, Grid], dst: tuple[str, Grid], *, fallback: bool = True):
        """The regridder of ``spec.remap`` between the named grids (``fallback=False``: the method alone)."""
        from atmorep_coupler.regrid.regridder import Regridder
        from atmorep_coupler.regrid.weightfile import read_weight_file

        remap = spec.remap
        fallback = tuple(step if isinstance(step, str) else step.fixed for step in remap.fallback) if fallback else ()
        key = (src[0], _digest(src[1].mask), dst[0], _digest(dst[1].mask), remap.method, fallback, remap.weights)
        if key not in self._cache:
            try:
                if remap.weights is None:
                    regridder = Regridder(src[1], dst[1], remap.method, fallback=fallback)
                else:
                    wf = read_weight_file(remap.weights)
                    if wf.method is not None and wf.method != remap.method:
                        raise RegridError(f"{remap.weights} holds {wf.method!r} weights, remap.method is {remap.method!r}")
                    regridder = Regridder(src[1], dst[1], remap.method, weights=wf.to_weights(src[1], dst[1]),
                                          fallback=fallback)
            except RegridError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            self._cache[key] = regridder
        return self._cache[key]

    def __len__(self) -> int:
        return len(self._cache)


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mask).tobytes()).hexdigest()


def build_exchange(
    index: int,
    spec: CouplingSpec,
    config: CoupledRunConfig,
    items: Mapping[str, Mapping[str, Any]],
    component_grids: Mapping[str, Mapping[int, Any]],
    grids: Mapping[str, Grid],
    regridders: RegridderCache,
    grid_names: Mapping[str, Mapping[int, str]] | None = None,
) -> Exchange:
    """The :class:`Exchange` of ``couplings[index]``: one route per field, regridders from the cache.

    Source grids carry the configured mask and (with ``remap.src_mask``) the mask the component
    publishes with its grid (e.g. the land cells of a prescribed SST); destination grids carry the
    configured mask only. ``grid_names[component][grid id]`` names the configured grid of each component
    grid (:func:`component_grid_names`; default: every field on its component's ``grid``).
    """
    src_comp, dst_comp = spec.from_, spec.to
    routes = []
    for j, f in enumerate(spec.fields):
        where = f"couplings[{index}].fields[{j}]"
        src_items = [items[src_comp][n] for n in f.src_names]
        dst_items = [items[dst_comp][n] for n in f.dst_names]
        src_grid = component_grids[src_comp][src_items[0].grid]
        dst_grid = component_grids[dst_comp][dst_items[0].grid]
        for kind, group, comp in (("src", src_items, src_comp), ("dst", dst_items, dst_comp)):
            if len({(i.grid, i.units) for i in group}) != 1:
                raise ConfigError(f"{where}.{kind}: the vector components of {comp!r} must share grid and units")
        if (src_grid.horizontal is None) != (dst_grid.horizontal is None):
            raise ConfigError(
                f"{where}: {f.src!r} of {src_comp!r} and {f.dst!r} of {dst_comp!r} must both be gridded or both "
                "scalars; the coupler does not broadcast or average between them"
            )
        if tuple(src_grid.levels) != tuple(dst_grid.levels):
            raise ConfigError(
                f"{where}: levels differ ({list(src_grid.levels)} vs {list(dst_grid.levels)}); the coupler "
                "maps horizontally only"
            )
        regridder = integral_weights = None
        src_name, dst_name = (
            (grid_names or {}).get(comp, {}).get(item.grid, config.components[comp].grid)
            for comp, item in ((src_comp, src_items[0]), (dst_comp, dst_items[0])))
        if src_grid.horizontal is not None and spec.remap is None and src_name != dst_name:
            raise ConfigError(f"couplings[{index}].remap: required, because {f.src!r} of {src_comp!r} lives on grid "
                              f"{src_name!r} and {f.dst!r} of {dst_comp!r} on {dst_name!r}")
        if src_grid.horizontal is not None and spec.remap is not None:
            src = grids[src_name]
            if spec.remap.src_mask:
                src = src.with_mask(src.mask & np.asarray(src_grid.horizontal.mask, dtype=bool))
            pair = (f"couplings[{index}].remap", spec, (src_name, src), (dst_name, grids[dst_name]))
            regridder = regridders.get(*pair)
            if spec.conservation is not None and not f.is_vector:
                integral_weights = area_integral_weights(regridders.get(*pair, fallback=False))
        routes.append(FieldRoute(
            src=f.src_names, dst=f.dst_names, src_units=src_items[0].units, units=f.units or dst_items[0].units,
            dst_dims=tuple(dst_grid.dims), regridder=regridder, integral_weights=integral_weights,
        ))
    return Exchange(index, spec, routes)
