"""What the downscaled export costs the AtmoRep component per step, as JSON.

The same pretrained network stepped as a component from its trainer checkpoint (model-grid fields only)
and from the fine-tuned checkpoint made from it (the same fields plus ``<variable>_fine``, predicted after
each step on the fine grid), in alternating rounds so that a busy machine slows both alike; reports the
best and median seconds per ``update()`` of each and their ratio.

    python bench/downscaling_component.py PRETRAINED.pt FINETUNED.pt --store PAIR/coarse.zarr --start ISO
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from atmorep_coupler.component.atmorep import AtmoRepComponent


def component(checkpoint: str, store: str, start: str) -> AtmoRepComponent:
    comp = AtmoRepComponent.from_config({"start": start, "calendar": "proleptic_gregorian", "checkpoint": checkpoint,
                                         "initial_condition": store})
    for spec in comp.inputs:  # hold every input at its initial value: the cost does not depend on it
        comp.set_value(spec.name, np.nan_to_num(comp._denormalize(spec, comp._window[spec.name][:, -1:],
                                                                  np.array([0.0]))).ravel()
                       if spec.spatial else np.zeros(1))
    return comp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pretrained", help="trainer checkpoint")
    parser.add_argument("finetuned", help="finetuned.pt of python -m atmorep_coupler.finetune from it")
    parser.add_argument("--store", required=True, help="the pair's coarse store (initial condition)")
    parser.add_argument("--start", required=True,
                        help="first time (ISO), with the context window before it in the store")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    args = parser.parse_args(argv)
    systems = {"model_grid_only": component(args.pretrained, args.store, args.start),
               "with_downscaled_export": component(args.finetuned, args.store, args.start)}
    times: dict[str, list[float]] = {name: [] for name in systems}
    for name, comp in systems.items():  # warm-up step
        comp.update()
    for _ in range(args.rounds):
        for name, comp in systems.items():
            begin = time.perf_counter()
            for _ in range(args.steps):
                comp.update()
            times[name].append((time.perf_counter() - begin) / args.steps)
    result = {"benchmark": "downscaling_component", "torch_threads": torch.get_num_threads(),
              "machine": platform.machine(), "rounds": args.rounds, "steps_per_round": args.steps,
              "seconds_per_step": {name: {"best": min(t), "median": statistics.median(t)} for name, t in times.items()}}
    result["load_average_1min_after"] = os.getloadavg()[0]  # the machine is shared: say how busy it was
    result["ratio_of_medians"] = (result["seconds_per_step"]["with_downscaled_export"]["median"]
                                  / result["seconds_per_step"]["model_grid_only"]["median"])
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
