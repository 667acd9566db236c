"""A host model that steps the AtmoRep component through the Basic Model Interface only.

    python examples/bmi_host_loop.py --checkpoint CKPT --store STORE [--steps N] [--time-step PT6H] [--out DIR]

What a Fortran or C host (or a BMI framework such as pymt) does with any BMI model, in the same
order: write the component's config file and ``initialize`` it; ask for its variables, grids,
units and time step (one token time slice of the training data: the component takes it from the
checkpoint, so the config leaves it out unless ``--time-step`` is given); then loop ``set_value`` (the imports, in the component's units) ->
``update`` -> ``get_value`` (the exports, into the host's own buffers); ``finalize``.
docs/host_model.md walks through it.

The host's own fields (what it hands the component each step) come from ``STORE`` here: the coarse
state ``coarse_<field>`` is the store's own coarse-model run where it has one (the default data's
``coarse_*``: what the model trained on), else the store's truth conservatively coarsened to a T15
Gaussian grid and back (what a coarse host model on that grid, regridded by the coupler, would
deliver), and the slow forcings (SST, insolation, CO2) are the store's values, NaN included where
the store has them (ERA5's SST over land: the component fills NaN as training did, if training saw
NaN there). A real host puts its own arrays there. Everything the component is asked goes through BMI; only the stand-in source
uses the package's data readers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import yaml

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.data import open_store
from atmorep_coupler.data.conditioning import coarsen
from atmorep_coupler.timeutil import format_duration

HOST_RESOLUTION = "T15"  # the stand-in host's coarse model grid (components/classical.py's default)
COARSE_PREFIX = "coarse_"
MEMBER_INFIX = "_member_"  # <field>_member_<k>: one export per ensemble member (docs/host_model.md)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python examples/bmi_host_loop.py", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="trainer checkpoint (trainer.pt)")
    parser.add_argument("--store", type=Path, required=True,
                        help="ERA5-layout store: the initial context window and the host's stand-in fields")
    parser.add_argument("--steps", type=int, default=4, help="component steps to take (default 4)")
    parser.add_argument("--start", help="start date (default: one day after the store's first time)")
    parser.add_argument("--time-step", help="the component's step, one token time slice of the training data "
                                            "(ISO 8601, e.g. PT6H; default: the checkpoint's)")
    parser.add_argument("--out", type=Path, default=Path("bmi_host"),
                        help="folder for the config file and host_fields.npz (default: ./bmi_host)")
    return parser


def write_config(path: Path, args: argparse.Namespace, start: dt.datetime) -> Path:
    """The BMI config file: the keys of AtmoRepConfig (docs/components.md), checked strictly."""
    config = {
        "start": start.isoformat(),
        "calendar": "proleptic_gregorian",
        "checkpoint": str(args.checkpoint.resolve()),
        "initial_condition": str(args.store.resolve()),
        "device": "cpu",
    }
    if args.time_step:  # otherwise the component takes one token time slice of the checkpoint's data
        config["time_step"] = args.time_step
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class HostFields:
    """The host side: fills flat buffers with its fields at a date, in the units the component asks for."""

    def __init__(self, store_path: Path):
        self.store = open_store(store_path)

    def fill(self, name: str, when: dt.datetime, levels: np.ndarray, units: str, out: np.ndarray) -> None:
        # the host's coarse model: the store's own coarse-model run where it has one (the default data's
        # coarse_*), else the truth coarsened to the coarse model's grid
        from_truth = name.startswith(COARSE_PREFIX) and name not in self.store.variables
        variable = name.removeprefix(COARSE_PREFIX) if from_truth else name
        index = self.store.time_index(np.datetime64(when))
        values = self.store.read(variable, time=[index], levels=list(levels) or None, units=units)[0]
        if from_truth:
            values = coarsen(values, self.store.latitudes, self.store.longitudes, HOST_RESOLUTION)
        out[:] = values.reshape(-1)


def grid_info(model: AtmoRepComponent, name: str) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray]:
    """Grid id, shape, levels (hPa; empty without a z axis) and latitudes of a variable, from BMI."""
    grid = model.get_var_grid(name)
    rank = model.get_grid_rank(grid)
    shape = tuple(int(n) for n in model.get_grid_shape(grid, np.empty(rank, dtype=np.int64))) if rank else ()
    levels = latitudes = np.empty(0)
    if rank >= 2:
        latitudes = model.get_grid_y(grid, np.empty(shape[-2]))
    if rank == 3:
        levels = model.get_grid_z(grid, np.empty(shape[0]))
    return grid, shape, levels, latitudes


def global_mean(values: np.ndarray, shape: tuple[int, ...], latitudes: np.ndarray) -> float:
    """Area-weighted (cos latitude) mean over every level and grid point."""
    field = values.reshape(shape)
    weights = np.broadcast_to(np.cos(np.deg2rad(latitudes))[:, None], field.shape[-2:])
    return float((field * weights).sum() / (weights.sum() * (field.size // weights.size)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host = HostFields(args.store)
    first = host.store.times[0].astype("datetime64[s]").item()
    start = dt.datetime.fromisoformat(args.start) if args.start else first + dt.timedelta(days=1)
    args.out.mkdir(parents=True, exist_ok=True)
    config_file = write_config(args.out / "atmorep_bmi.yaml", args, start)

    # ---- initialize: one config file, as for any BMI model
    model = AtmoRepComponent()
    model.initialize(str(config_file))

    # ---- what the component exchanges: names, grids, units, time
    # prognostic fields are inputs and outputs (a host may overwrite the state); the host supplies the
    # pure imports, the coarse state and the forcings, and takes the ensemble mean (not <field>_members)
    outputs = [n for n in model.get_output_var_names() if MEMBER_INFIX not in n]
    inputs = [n for n in model.get_input_var_names() if n not in model.get_output_var_names()]
    dt_s = model.get_time_step()
    step_iso = format_duration(dt.timedelta(seconds=dt_s))
    print(f"{model.get_component_name()}: time step {dt_s:g} {model.get_time_units()} ({step_iso}), start {start.isoformat()}")
    print(f"{'variable':<32} {'in/out':<6} {'grid':>4} {'shape':<14} units")
    for name in inputs + outputs:
        grid, shape, _, _ = grid_info(model, name)
        kind = "in" if name in inputs else "inout" if name in model.get_input_var_names() else "out"
        print(f"{name:<32} {kind:<6} {grid:>4} {str(shape):<14} {model.get_var_units(name)}")

    # ---- host buffers: flat, C order (level, lat, lon), longitude fastest
    info = {name: grid_info(model, name) for name in inputs + outputs}
    buffers = {name: np.empty(model.get_grid_size(info[name][0]), dtype=model.get_var_type(name))
               for name in inputs + outputs}

    labels = [f"{n} [{model.get_var_units(n)}]" for n in outputs]
    print(f"\nglobal means (area-weighted, all levels)\n{'step':>4} {'time [s]':>9} {'date':<19}  "
          + "  ".join(labels))
    for step in range(1, args.steps + 1):
        # imports hold for the target time of the step (docs/host_model.md, "Imports")
        target = start + dt.timedelta(seconds=model.get_current_time() + dt_s)
        for name in inputs:
            host.fill(name, target, info[name][2], model.get_var_units(name), buffers[name])
            model.set_value(name, buffers[name])
        model.update()
        for name in outputs:
            model.get_value(name, buffers[name])
        means = "  ".join(f"{global_mean(buffers[n], info[n][1], info[n][3]):>{len(label)}.7g}"
                          for n, label in zip(outputs, labels))
        print(f"{step:>4} {model.get_current_time():>9g} {target.isoformat():<19}  {means}")

    np.savez(args.out / "host_fields.npz", time=model.get_current_time(),
             **{name: buffers[name].reshape(info[name][1]) for name in outputs})
    print(f"\nconfig file: {config_file}\nhost buffers after the last step: {args.out / 'host_fields.npz'}")
    model.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
