"""Coupled-run benchmark: simulated days per wall-clock minute, split by part, printed as JSON.

Runs a coupling YAML (default ``coupling_configs/default.yaml`` when it exists, else
``coupling_configs/forcing_only.yaml``) into a temporary folder and reports the wall time of set-up
(weights, components), of each component (steps, get/set field), of exchanges (time reduction,
units, regridding), of output writing and of restarts.

    python bench/coupled.py [CONFIG] [--days N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

from atmorep_coupler.component.clock import to_cftime
from atmorep_coupler.coupling.driver import CoupledRun
from atmorep_coupler.coupling.schema import load_coupling_config

CONFIGS = Path(__file__).resolve().parents[1] / "coupling_configs"


def main() -> None:
    default = CONFIGS / "default.yaml"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=default if default.exists() else CONFIGS / "forcing_only.yaml")
    parser.add_argument("--days", type=float, default=None, help="shorten the run to this many simulated days")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.config
        if args.days is not None:
            mapping = yaml.safe_load(path.read_text())
            config, _ = load_coupling_config(path)
            start = to_cftime(config.run.start, config.run.calendar)
            mapping["run"]["end"] = (start + dt.timedelta(days=args.days)).isoformat()
            path = Path(tmp) / path.name
            path.write_text(yaml.safe_dump(mapping, sort_keys=False))
        start_time = time.perf_counter()
        with CoupledRun.from_file(path, out_dir=Path(tmp) / "out", progress=False) as run:
            summary = run.run()
        wall = time.perf_counter() - start_time
    days = summary.elapsed_seconds / 86400
    loop = wall - summary.timings.get("setup", 0.0)
    print(json.dumps({
        "benchmark": "coupled",
        "config": str(args.config),
        "simulated_days": days,
        "wall_seconds": round(wall, 3),
        "simulated_days_per_wall_minute": round(days / (wall / 60), 2),
        "simulated_days_per_wall_minute_excluding_setup": round(days / (loop / 60), 2),
        "seconds_by_part": {k: round(v, 3) for k, v in sorted(summary.timings.items())},
        "max_conservation_error": summary.max_conservation_error,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=1))


if __name__ == "__main__":
    main()
