"""Cost of a coupled run: simulated days per wall-clock hour of the hybrid, the coarse model alone and the
truth model, measured side by side; prints JSON.

    python bench/coupled.py [--store STORE] [--checkpoint CKPT] [--start DATE] [--days N] [--repeats R]

- **hybrid**: ``coupling_configs/default.yaml`` (the multiformer two-way coupled to the classical model,
  forcings, outputs and restarts) through the coupling driver, for ``--days`` from ``--start``;
- **coarse model alone**: ``coupling_configs/coarse_alone.yaml`` (the same T15 classical model and CO2
  scenario, free) over the same days;
- **truth model**: the dinosaur model at the store's resolution (T21 for the default data), stepped and
  diagnosed on pressure levels every 3 hours, as the default-data generator runs it (without writing).

Set-up (spin-ups, weights, compilation) is excluded from the rates and reported apart. The three run in
turn, ``--repeats`` times (hybrid, coarse, truth, hybrid, ...), so a change of load on a shared machine
hits them alike; the rates are medians. Without ``--store``/``--checkpoint`` the tiny default store and
an untrained model of the default config are used (the cost does not depend on the weights); the
default store and a trained checkpoint give the numbers of the real run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollout import _store, _untrained_checkpoint  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "coupling_configs"
DAY_S = 86400.0


def _window(start: dt.datetime, days: float) -> list[str]:
    end = start + dt.timedelta(days=days)
    return [f"run.start={start.isoformat()}", f"run.end={end.isoformat()}", f"run.restart.every=P{max(1, int(days))}D"]


def time_run(config: Path, overrides: list[str], out: Path) -> dict:
    """Run a coupling YAML with ``--set`` overrides; wall seconds with and without set-up."""
    from atmorep_coupler.coupling.driver import CoupledRun
    from atmorep_coupler.run import load_config

    parsed, base = load_config(config, overrides)
    start = time.perf_counter()
    with CoupledRun(parsed, base_dir=base, out_dir=out, resume=False, progress=False) as run:
        summary = run.run()
    wall = time.perf_counter() - start
    setup = summary.timings.get("setup", 0.0)
    return {"simulated_days": summary.elapsed_seconds / DAY_S, "wall_s": wall, "setup_s": setup,
            "loop_s": wall - setup, "seconds_by_part": {k: round(v, 2) for k, v in sorted(summary.timings.items())},
            "max_conservation_error": summary.max_conservation_error}


def time_truth_model(store: Path, days: float) -> dict:
    """The truth model stepped and diagnosed every 3 h for ``days`` (after a compiling day)."""
    from atmorep_coupler.analysis.counterfactual import store_config
    from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig

    config = store_config(store)
    start = time.perf_counter()
    model = HeldSuarezModel(ModelConfig(resolution=config.resolution, sigma_levels=config.sigma_levels,
                                        pressure_levels_hPa=tuple(config.pressure_levels_hPa)), config.scenario)
    model.initialize(config.seed)
    interval = model.steps_per(3 * 3600.0)
    for _ in range(8):  # compiles
        model.step(interval)
        model.diagnose("latlon")
    setup = time.perf_counter() - start
    outputs = int(round(days * 8))
    start = time.perf_counter()
    for _ in range(outputs):
        model.step(interval)
        model.diagnose("latlon")
    loop = time.perf_counter() - start
    return {"simulated_days": outputs / 8, "wall_s": setup + loop, "setup_s": setup, "loop_s": loop,
            "resolution": config.resolution}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="truth store (default: the tiny default store)")
    parser.add_argument("--checkpoint", help="trainer checkpoint of the default config (default: untrained)")
    parser.add_argument("--start", type=dt.datetime.fromisoformat, default=None,
                        help="start of the runs (default: the store's first day + 1 day)")
    parser.add_argument("--days", type=float, default=1.0,
                        help="simulated days per run, a whole number (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three runs (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    if args.days <= 0 or args.days != int(args.days):
        parser.error(f"--days {args.days}: a whole number of days > 0 (the YAMLs write daily-mean outputs)")

    import torch

    from atmorep_coupler.data import open_store
    from atmorep_coupler.quickstart import coupled_overrides

    torch.set_num_threads(args.threads)
    store = _store(args.store)
    first = open_store(store).times[0].astype("datetime64[s]").astype(dt.datetime)
    start = args.start or first + dt.timedelta(days=1)
    classical = ["components.classical.config.spinup_days=10", "components.classical.config.initialization.days=1"]
    results: dict[str, list[dict]] = {"hybrid": [], "coarse model alone": [], "truth model": []}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else _untrained_checkpoint(store, Path(folder))
        for r in range(args.repeats):
            results["hybrid"].append(time_run(
                CONFIGS / "default.yaml", coupled_overrides(checkpoint, store) + _window(start, args.days) + classical,
                Path(folder) / f"hybrid{r}"))
            results["coarse model alone"].append(time_run(
                CONFIGS / "coarse_alone.yaml",
                [f"components.classical.config.initialization.store={store}"] + _window(start, args.days) + classical,
                Path(folder) / f"coarse{r}"))
            results["truth model"].append(time_truth_model(store, args.days))
    rates = {name: statistics.median(run["simulated_days"] / run["loop_s"] * 3600.0 for run in runs)
             for name, runs in results.items()}
    print(json.dumps({
        "benchmark": "coupled",
        "store": str(store), "checkpoint": args.checkpoint or "untrained configs/default.yaml",
        "start": start.isoformat(), "simulated_days_per_run": args.days, "repeats": args.repeats,
        "simulated_days_per_wall_hour": {k: round(v, 1) for k, v in rates.items()},
        "hybrid_cost_over_coarse_alone": round(rates["coarse model alone"] / rates["hybrid"], 1),
        "hybrid_cost_over_truth_model": round(rates["truth model"] / rates["hybrid"], 2),
        "runs": results,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "numpy": np.__version__},
    }, indent=1))


if __name__ == "__main__":
    main()
