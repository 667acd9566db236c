"""Cost per simulated day: the AtmoRep component's global rollout at ERA5 resolutions, and dinosaur's
Held-Suarez model.

    python bench/rollout.py                                   # tiny default store (generated/cached)
    python bench/rollout.py --store /tmp/default.zarr --checkpoint runs/default/checkpoints/last.pt
    python bench/rollout.py --device cuda --tile-batch-sizes 8 56
    python bench/rollout.py --run-resolutions 1.5 --days 0.125 --dinosaur   # also step a 1.5-degree grid for real

The component runs the ``default`` multiformer (``configs/default.yaml``: 4 predicted fields on 4
levels, coarse conditioning and slow forcings) on the default data's 32x64 grid, stepping 3 h at a
time over a global tiling of 56 overlapping neighbourhoods; the imports of every step (coarse
conditioning, SST, insolation, CO2) are fed from the store's truth, as a driver would. Without
``--checkpoint`` an untrained model of that config is used: the timing does not depend on the weights.
Each tile batch size is timed over ``--days`` simulated days after one warm-up step.

**ERA5 resolutions.** A global step runs the network on every tile of the tiling (``model/tiling.py``),
so its cost is (tiles per step) x (network cost of one tile) + (grid points) x (cutting, normalizing
and blending cost per point). ``resolutions`` lists, for 5.625° (32x64, WeatherBench 2's 64x32), 1.5°
(121x240 with rows on the poles) and 0.25° (721x1440, ARCO-ERA5), the exact tile counts for the default
overlap (half a neighbourhood), a quarter and none, and the CPU cost per step and per simulated day
predicted from the two coefficients measured on the default data's grid (``measured``: the network's
share counted around the network's own calls). ``--run-resolutions 1.5`` also steps the default model on a
store regridded to that grid (conservatively, from the default data; statistics over the same times) to
check the prediction; 0.25° needs tens of GB and hours on one CPU, so it is predicted, not run, here.
Times are CPU seconds of this process (``time.process_time``) besides wall seconds: on a machine shared
with other busy processes the CPU time is the one to compare.

Dinosaur (``data.held_suarez.HeldSuarezModel``) is timed at the training data's resolution (T21,
which produced the store) and at the classical component's default (T15), after one JIT-compiling
day. Prints one JSON document.

On a machine shared with other busy processes use ``--threads 1``: with more torch threads than
free cores, OpenMP's spinning barriers make the many small kernels of a step 10-40x slower and the
timings erratic (measured: 0.5 to 21 s for the same step).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time

from pathlib import Path

import numpy as np
import torch

DAY_S = 86400.0
#: Grids of the ERA5 copies: degrees -> (nlat, nlon); rows on the poles except WeatherBench 2's 64x32.
ERA5_GRIDS = {5.625: (32, 64), 1.5: (121, 240), 0.25: (721, 1440)}


class TimedNetwork:
    """The component's network, counting the CPU and wall seconds spent inside its calls and the tiles."""

    def __init__(self, network):
        self.network, self.cpu_s, self.wall_s, self.tiles = network, 0.0, 0.0, 0

    def __call__(self, masked, meta):
        cpu, wall = time.process_time(), time.perf_counter()
        result = self.network(masked, meta)
        self.cpu_s += time.process_time() - cpu
        self.wall_s += time.perf_counter() - wall
        self.tiles += next(iter(masked.values())).inputs.shape[0]
        return result


def _store(path: str | None) -> Path:
    from atmorep_coupler.data.default import DefaultDataConfig, generate

    return Path(path) if path else generate(DefaultDataConfig.tiny_store(), progress=False)


def _untrained_checkpoint(store: Path, folder: Path) -> Path:
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    run = load_run_config(config_path("default")).with_overrides(store=str(store))
    data = dataclasses.replace(run.data, train=dataclasses.replace(run.data.train, end=None), validation=None)
    folder.mkdir(parents=True, exist_ok=True)
    return Trainer(dataclasses.replace(run, data=data)).save_checkpoint(folder / "untrained_default.pt")


def _feed(component, store, readers) -> None:
    """Imports of every input-only field at the next step's target time, from the store's truth."""
    target = component.datetime_at(component.get_current_time() + component.get_time_step())
    index = store.time_index(np.datetime64(target.isoformat()))
    for spec in component.inputs:
        read = readers[spec.name]
        values = read(store, spec.variable, time=[index], levels=list(spec.config.levels) or None)[0]
        component.set_value(spec.name, np.asarray(values).ravel())


def time_component(checkpoint: Path, store_path: Path, tile_batch_size: int, days: float, device: str) -> dict:
    from atmorep_coupler.component.atmorep import AtmoRepComponent
    from atmorep_coupler.model.checkpoint import load_checkpoint
    from atmorep_coupler.data import open_store
    from atmorep_coupler.data.sampler import transform_reader
    from atmorep_coupler.data.store import ERA5Store

    store = open_store(store_path)
    nt = load_checkpoint(checkpoint)[0].neighbourhood[0]  # start at the first time with a full window
    component = AtmoRepComponent.from_config({
        "start": str(store.times[nt - 1])[:19], "time_step": "PT3H", "checkpoint": str(checkpoint),
        "initial_condition": str(store_path), "tile_batch_size": tile_batch_size, "device": device,
    })
    readers = {s.name: transform_reader(s.config.transform) if s.config.transform else ERA5Store.read
               for s in component.inputs}
    steps = int(round(days * DAY_S / component.get_time_step()))
    if nt + steps >= store.times.size:
        raise SystemExit(f"the store has {store.times.size} times; {days} days after the window need more")
    _feed(component, store, readers)
    component.update()  # warm-up
    component.network = timed = TimedNetwork(component.network)
    feed_s = step_s = step_cpu = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        _feed(component, store, readers)
        t1, c1 = time.perf_counter(), time.process_time()
        component.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2, c2 = time.perf_counter(), time.process_time()
        feed_s, step_s, step_cpu = feed_s + t1 - t0, step_s + t2 - t1, step_cpu + c2 - c1
    simulated_days = steps * component.get_time_step() / DAY_S
    points = component.tiling.nlat * component.tiling.nlon
    return {
        "grid": [component.tiling.nlat, component.tiling.nlon],
        "tile_batch_size": tile_batch_size,
        "tiles": component.tiling.count,
        "steps": steps,
        "wall_s_per_simulated_day": step_s / simulated_days,
        "wall_s_per_step": step_s / steps,
        "cpu_s_per_step": step_cpu / steps,
        "network_cpu_s_per_tile": timed.cpu_s / timed.tiles,
        "other_cpu_s_per_grid_point": (step_cpu - timed.cpu_s) / steps / points,
        "import_feeding_s_per_simulated_day": feed_s / simulated_days,
    }


def tiling_costs(model, measured: dict, hours_per_step: float) -> list[dict]:
    """Tiles per step at the ERA5 resolutions (default, quarter and no overlap) and the CPU cost they
    predict with the measured coefficients."""
    from atmorep_coupler.model.tiling import GlobalTiling

    _, ny, nx = model.neighbourhood
    overlaps = {"half (default)": (ny // 2, nx // 2), "quarter": (ny // 4, nx // 4), "none": (0, 0)}
    rows = []
    for degrees, (nlat, nlon) in ERA5_GRIDS.items():
        tiles = {name: GlobalTiling(nlat, nlon, (ny, nx), o).count for name, o in overlaps.items()}
        per_step = {name: n * measured["network_cpu_s_per_tile"] + nlat * nlon * measured["other_cpu_s_per_grid_point"]
                    for name, n in tiles.items()}
        rows.append({"degrees": degrees, "grid": [nlat, nlon], "tiles_per_step": tiles,
                     "predicted_cpu_s_per_step": per_step,
                     "predicted_cpu_s_per_simulated_day": {k: v * 24.0 / hours_per_step for k, v in per_step.items()}})
    return rows


def regridded_store(source: Path, nlat: int, nlon: int, folder: Path, times: int) -> Path:
    """The first ``times`` times of ``source`` conservatively on a grid with rows on the poles, with statistics."""
    import xarray as xr

    from atmorep_coupler.data import open_store
    from atmorep_coupler.data.statistics import compute_normalization
    from atmorep_coupler.regrid.grids import LatLonGrid
    from atmorep_coupler.regrid.regridder import Regridder

    src = open_store(source)
    lat, lon = np.linspace(90.0, -90.0, nlat), np.arange(nlon) * 360.0 / nlon
    regrid = Regridder(LatLonGrid.from_centers(src.latitudes, src.longitudes), LatLonGrid.from_centers(lat, lon),
                       "conservative_normed", progress=False)
    data = {}
    for name in src.variables:
        da = src.dataset[name]
        values = src.read(name, time=slice(0, times))
        if "latitude" in da.dims:
            values = np.asarray(regrid.apply(values.astype(np.float64)), dtype=np.float32)
        dims = [d for d in ("time", "level", "latitude", "longitude") if d in da.dims]
        data[name] = (dims, values, dict(da.attrs))
    ds = xr.Dataset(data, coords={"time": src.times[:times], "level": ("level", src.levels, {"units": "hPa"}),
                                  "latitude": lat, "longitude": lon})
    out = folder / f"default_{nlat}x{nlon}.zarr"
    ds.to_zarr(out, mode="w", consolidated=False)
    compute_normalization(open_store(out), progress=False).save(open_store(out))
    return out


def time_dinosaur(resolution: str, days: float) -> dict:
    from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig

    model = HeldSuarezModel(ModelConfig(resolution=resolution))
    model.initialize(seed=0)
    steps = model.steps_per(DAY_S)
    model.step(steps)  # JIT compilation
    model.diagnose("latlon")
    t0 = time.perf_counter()
    n_days = max(1, int(round(days)))
    for _ in range(n_days):
        model.step(steps)
    model.diagnose("latlon")  # forces the result (JAX dispatches asynchronously)
    wall = time.perf_counter() - t0
    return {
        "resolution": resolution,
        "grid": list(model.gaussian_grid.shape),
        "dt_s": model.dt_seconds,
        "steps_per_day": steps,
        "wall_s_per_simulated_day": wall / n_days,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="ERA5-layout store with statistics (default: the tiny default store)")
    parser.add_argument("--checkpoint", help="trainer checkpoint of the default config (default: untrained)")
    parser.add_argument("--tile-batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 56])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--dinosaur", nargs="*", default=["T21", "T15"], help="resolutions to time")
    parser.add_argument("--run-resolutions", type=float, nargs="*", default=[], choices=[1.5, 0.25],
                        help="also step the default model on these ERA5 grids (a regridded store; costly)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = _store(args.store)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else _untrained_checkpoint(store, Path(folder))
        component = [time_component(checkpoint, store, b, args.days, args.device) for b in args.tile_batch_sizes]
        from atmorep_coupler.model.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint)[0]
        nt = model.neighbourhood[0]
        ran = []
        for degrees in args.run_resolutions:
            nlat, nlon = ERA5_GRIDS[degrees]
            steps = max(1, int(round(args.days * 8)))  # 3-hour steps of the default data
            big = regridded_store(store, nlat, nlon, Path(folder), nt + steps + 2)
            untrained = _untrained_checkpoint(big, Path(folder) / f"{nlat}x{nlon}")  # the same config, its statistics
            ran.append({"degrees": degrees, **time_component(untrained, big, max(args.tile_batch_sizes), args.days,
                                                            args.device)})
    best = min(component, key=lambda r: r["cpu_s_per_step"])
    hours = 3.0 * model.predicted_fields[0].token_size[0]
    result = {
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(), "device": args.device,
                    "torch": torch.__version__},
        "store": str(store),
        "checkpoint": args.checkpoint or "untrained configs/default.yaml",
        "atmorep_component": component,
        "resolutions": tiling_costs(model, best, hours),
        "resolutions_run": ran,
        "dinosaur_held_suarez": [time_dinosaur(r, args.days) for r in args.dinosaur],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
