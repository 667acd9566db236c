"""Concurrent stages under ``transport: ray``: two slow components stepping at the same time against the same
run one step after another (``run.concurrent: false``, the peer); prints JSON.

    python bench/concurrent_coupling.py [--resolution T42] [--hours 24] [--repeats 3] [--one-thread]

The run: two dinosaur Held-Suarez models (the classical component) at ``--resolution`` on one Gaussian grid,
from different seeds, each nudged toward the other's temperature and winds through a coupling lagged by its
period (3 h), so the run sequence puts the steps of both in one stage (``--print-sequence`` shows
``stage: left | right``). Each model is a Ray actor. Concurrent and sequential runs alternate, ``--repeats``
pairs, so a change of load on the shared machine hits both alike; the ratio of each pair's loop times
(set-up, i.e. spin-up and JAX compilation, excluded) is reported with its median, and the load average
before each run. The two runs' outputs are compared bit for bit. ``--one-thread`` keeps each model to one
thread (XLA's CPU client single-threaded), as when each component has a core or device of its own;
without it each model's XLA uses every core, so on a machine with few cores the concurrent steps compete
for the same cores.
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
import xarray as xr

START = dt.datetime(2000, 1, 1)
FIELDS = ["temperature", "u_component_of_wind", "v_component_of_wind"]


def config(resolution: str, hours: int, concurrent: bool) -> dict:
    from atmorep_coupler.data.spectral import gaussian_latitudes, truncation

    nlat = gaussian_latitudes(truncation(resolution))
    nlon = 2 * nlat
    model = {"resolution": resolution, "pressure_levels_hPa": [250, 500, 700, 850],
             "nudging": {"tau": "PT12H", "levels_hPa": [250, 500, 700, 850], "reach_hPa": 100}}

    def coupling(src: str, dst: str) -> dict:
        return {"from": src, "to": dst, "fields": [{"src": f, "dst": f"nudging_{f}"} for f in FIELDS],
                "period": "PT3H", "lag": "PT3H", "time_reduction": "instant"}

    return {
        "version": 1,
        "run": {"name": "concurrent", "start": START.isoformat(), "end": (START + dt.timedelta(hours=hours)).isoformat(),
                "calendar": "proleptic_gregorian", "transport": "ray", "concurrent": concurrent},
        "grids": {"g": {"type": "gaussian", "nlat": nlat, "nlon": nlon, "lat_order": "descending"}},
        "components": {name: {"kind": "classical", "grid": "g", "timestep": "PT1H", "config": {**model, "seed": seed}}
                       for name, seed in (("left", 1), ("right", 2))},
        "couplings": [coupling("left", "right"), coupling("right", "left")],
        "outputs": [{"component": name, "variables": ["temperature"], "interval": "PT6H", "reduction": "instant",
                     "path": f"{name}.zarr"} for name in ("left", "right")],
    }


def time_run(parsed, out: Path) -> dict:
    from atmorep_coupler.coupling.driver import CoupledRun

    load = os.getloadavg()[0]
    start = time.perf_counter()
    with CoupledRun(parsed, base_dir=out, out_dir=out, resume=False, progress=False) as run:
        summary = run.run()
        stages = [len(stage.blocks) for stage in run.stages if stage.barrier is None]
    wall = time.perf_counter() - start
    setup = summary.timings.get("setup", 0.0)
    return {"loop_s": round(wall - setup, 3), "setup_s": round(setup, 3), "load_average_1min_before": load,
            "stages": len(stages), "stages_with_two_steps": stages.count(2),
            "component_s": {k: round(v, 2) for k, v in summary.timings.items() if k.startswith("component:")}}


def same_outputs(a: Path, b: Path) -> bool:
    for name in ("left.zarr", "right.zarr"):
        with xr.open_zarr(a / name) as x, xr.open_zarr(b / name) as y:
            if not all(np.array_equal(x[v].values, y[v].values) for v in x.data_vars):
                return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="T42", help="spectral truncation of both models (default T42)")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours per run (a multiple of 3)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (sequential, concurrent)")
    parser.add_argument("--one-thread", action="store_true", help="each model on one thread (module docstring)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import ray

    import atmorep_coupler  # noqa: F401  (loopback-only Ray before ray.init)
    from atmorep_coupler.coupling.schema import load_coupling_config

    runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    identical = True
    env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "OMP_NUM_THREADS": "1"} if args.one_thread else {}
    ray.init(address="local", include_dashboard=False, num_cpus=2, runtime_env={"env_vars": env})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                order = ("sequential", "concurrent") if repeat % 2 == 0 else ("concurrent", "sequential")
                for mode in order:
                    parsed, _ = load_coupling_config(config(args.resolution, args.hours, mode == "concurrent"))
                    out = Path(tmp) / f"{mode}{repeat}"
                    runs[mode].append(time_run(parsed, out))
                    print(f"{mode} {repeat}: {runs[mode][-1]['loop_s']} s", file=sys.stderr)
                identical &= same_outputs(Path(tmp) / f"sequential{repeat}", Path(tmp) / f"concurrent{repeat}")
    finally:
        ray.shutdown()
    ratios = [s["loop_s"] / c["loop_s"] for s, c in zip(runs["sequential"], runs["concurrent"], strict=True)]
    print(json.dumps({
        "benchmark": "concurrent stages under transport: ray (two classical models, lag = period both ways)",
        "resolution": args.resolution, "simulated_hours": args.hours, "repeats": args.repeats,
        "one_thread_per_model": args.one_thread,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1_5_15min_at_end": os.getloadavg(),
                    "note": "shared with other jobs; sequential and concurrent runs alternate"},
        "runs": runs,
        "speedup_sequential_over_concurrent": [round(r, 3) for r in ratios],
        "median_speedup": round(statistics.median(ratios), 3),
        "outputs_bit_identical": identical,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
