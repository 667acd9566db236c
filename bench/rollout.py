"""Wall time per simulated day: the AtmoRep component's global rollout and dinosaur's Held-Suarez model.

    python bench/rollout.py                                   # tiny default store (generated/cached)
    python bench/rollout.py --store /tmp/default.zarr --checkpoint runs/default/checkpoints/last.pt
    python bench/rollout.py --device cuda --tile-batch-sizes 8 56

The component runs the ``default`` multiformer (``configs/default.yaml``: 4 predicted fields on 4
levels, coarse conditioning and slow forcings) on the default data's 32x64 grid, stepping 3 h at a
time over a global tiling of 56 overlapping neighbourhoods; the imports of every step (coarse
conditioning, SST, insolation, CO2) are fed from the store's truth, as a driver would. Without
``--checkpoint`` an untrained model of that config is used: the timing does not depend on the weights.
Each tile batch size is timed over ``--days`` simulated days after one warm-up step.

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


def _store(path: str | None) -> Path:
    from atmorep_coupler.data.default import DefaultDataConfig, generate

    return Path(path) if path else generate(DefaultDataConfig.tiny_store(), progress=False)


def _untrained_checkpoint(store: Path, folder: Path) -> Path:
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    run = load_run_config(config_path("default")).with_overrides(store=str(store))
    data = dataclasses.replace(run.data, train=dataclasses.replace(run.data.train, end=None), validation=None)
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
    from atmorep_coupler.component.atmorep import AtmoRepComponent, load_checkpoint
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
    feed_s = step_s = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        _feed(component, store, readers)
        t1 = time.perf_counter()
        component.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        feed_s, step_s = feed_s + t1 - t0, step_s + t2 - t1
    simulated_days = steps * component.get_time_step() / DAY_S
    return {
        "tile_batch_size": tile_batch_size,
        "tiles": component.tiling.count,
        "steps": steps,
        "wall_s_per_simulated_day": step_s / simulated_days,
        "wall_s_per_step": step_s / steps,
        "import_feeding_s_per_simulated_day": feed_s / simulated_days,
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="ERA5-layout store with statistics (default: the tiny default store)")
    parser.add_argument("--checkpoint", help="trainer checkpoint of the default config (default: untrained)")
    parser.add_argument("--tile-batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 56])
    parser.add_argument("--days", type=float, default=1.0, help="simulated days per timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--dinosaur", nargs="*", default=["T21", "T15"], help="resolutions to time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    store = _store(args.store)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else _untrained_checkpoint(store, Path(folder))
        component = [time_component(checkpoint, store, b, args.days, args.device) for b in args.tile_batch_sizes]
    result = {
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(), "device": args.device,
                    "torch": torch.__version__},
        "store": str(store),
        "checkpoint": args.checkpoint or "untrained configs/default.yaml",
        "atmorep_component": component,
        "dinosaur_held_suarez": [time_dinosaur(r, args.days) for r in args.dinosaur],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
