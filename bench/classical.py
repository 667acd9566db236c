"""Classical-model benchmark: wall time per simulated day, as JSON, all measured in one run.

* ``component``: the classical component at its default resolution (T15, 24 x 48 Gaussian grid)
  stepped as a coupled run steps it (``time_step`` PT1H: 3 model steps, then the pressure-level
  diagnostics for the exports), and its set-up time (model build, JAX compilation -- from the
  persistent cache when warm --, first diagnostics);
* ``model``: :class:`HeldSuarezModel` alone, one compiled loop per simulated day, at T10, the
  component's T15 and T21 (the training data's resolution), plus ``diagnose("latlon")`` at T21
  (what the default-data generator calls every output time).

Each number is the best (smallest) of ``--repeat`` rounds of ``--days`` simulated days after one
warm-up day, so compilation is excluded.

    python bench/classical.py [--days 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig
from components.classical import ClassicalModel


def best_seconds_per_day(advance_one_day, days: int, repeat: int) -> float:
    advance_one_day()  # warm-up: compilation
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(days):
            advance_one_day()
        rounds.append((time.perf_counter() - start) / days)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    component = ClassicalModel.from_config({"start": "2000-01-01", "time_step": "PT1H"})
    setup = time.perf_counter() - start
    steps_per_day = int(86400 // component.get_time_step())
    result = {
        "component": {
            "resolution": component.config.resolution,
            "grid": list(component.grids[0].horizontal.shape),
            "time_step": "PT1H",
            "model_dt_s": component.model.dt_seconds,
            "setup_s": round(setup, 2),
            "s_per_simulated_day": round(
                best_seconds_per_day(lambda: component.step(steps_per_day), args.days, args.repeat), 4
            ),
        },
        "model": {},
    }
    component.finalize()
    for resolution in ("T10", "T15", "T21"):
        model = HeldSuarezModel(ModelConfig(resolution=resolution))
        model.initialize(seed=0)
        per_day = model.steps_per(86400.0)

        def one_day(model=model, per_day=per_day) -> None:
            model.step(per_day)
            model.get_state()  # wait for the result (JAX dispatches asynchronously)

        entry = {
            "grid": [model.coords.horizontal.latitude_nodes, model.coords.horizontal.longitude_nodes],
            "dt_s": model.dt_seconds,
            "s_per_simulated_day": round(best_seconds_per_day(one_day, args.days, args.repeat), 4),
        }
        if resolution == "T21":
            model.diagnose("latlon")
            begin = time.perf_counter()
            for _ in range(8):
                model.diagnose("latlon")
            entry["diagnose_latlon_s"] = round((time.perf_counter() - begin) / 8, 4)
        result["model"][resolution] = entry
    result["machine"] = {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                         "python": platform.python_version()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
