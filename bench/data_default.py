"""Benchmark of the default-data generator and the statistics pass; prints JSON.

For T21 and T42, each in a fresh subprocess with an empty JAX compilation cache:
- ``cold``: generating 1 simulated day (import, model build, XLA compilation, writing);
- ``days_30``: generating 30 simulated days of 3-hourly output afterwards (compiled programs come
  from the persistent cache, as on any second run), wall time, s per simulated day and store size;
- ``statistics``: one normalization pass over that 30-day store (MB of float32 read per second);
- ``peak_rss_mb``: the subprocess's peak resident memory.

Spin-up is set to 0 here so the numbers are per written day; the default run adds 100 spin-up days
at the same cost per day (without the writing). Usage: ``python bench/data_default.py [T21 T42]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from atmorep_coupler.data.default import DefaultDataConfig, generate
from atmorep_coupler.data.statistics import compute_normalization
from atmorep_coupler.data.store import open_store

resolution, out = sys.argv[1], Path(sys.argv[2])

def config(days):
    return DefaultDataConfig(resolution=resolution, spinup_days=0.0, output_days=days, tiny=True)

generate(config(1), out / "cold.zarr", progress=False, statistics=False)
cold = time.perf_counter() - t0
t1 = time.perf_counter()
path = generate(config(30), out / "days30.zarr", progress=False, statistics=False)
wall = time.perf_counter() - t1
size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
store = open_store(path)
nbytes = sum(4 * store.dataset[v].size for v in store.variables)
t2 = time.perf_counter()
compute_normalization(store, progress=False)
stats = time.perf_counter() - t2
print(json.dumps({
    "resolution": resolution,
    "grid": f"{store.latitudes.size}x{store.longitudes.size}, {store.levels.size} pressure levels",
    "cold_1_day_wall_s": round(cold, 2),
    "days_30_wall_s": round(wall, 2),
    "s_per_simulated_day": round(wall / 30, 3),
    "store_30_days_mb": round(size / 2**20, 1),
    "one_year_store_mb_estimate": round(size / 2**20 * 366 / 30, 1),
    "statistics_wall_s": round(stats, 3),
    "statistics_mb_per_s": round(nbytes / 2**20 / stats, 1),
    "statistics_times_per_s": round(store.times.size / stats, 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def run(resolution: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ATMOREP_COUPLER_CACHE": os.path.join(tmp, "cache")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        result = subprocess.run(
            [sys.executable, "-c", CHILD, resolution, tmp],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    resolutions = sys.argv[1:] or ["T21", "T42"]
    print(
        json.dumps(
            {
                "cpu_count": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "results": [run(r) for r in resolutions],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
