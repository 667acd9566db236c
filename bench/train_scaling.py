"""Training throughput of the tiny run with 1 and 2 Ray Train workers (and one process without Ray).

    python bench/train_scaling.py [--store TINY.zarr] [--steps 40] [--workers 1 2] [--gpus-per-worker 1]

Prints JSON. ``samples_per_s`` is the median over the logged steps after ``--warmup`` of (global
samples in the step) / (wall time of the step) as the workers log it, i.e. steady-state training,
not Ray's start-up, which ``wall_s`` (the whole ``train_distributed`` call) includes. Without
``--store`` the tiny default store is generated into a temporary folder first (about a minute).
One private Ray instance serves every worker count. On a machine shared with other jobs the
numbers are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from pathlib import Path

import torch

from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import RunConfig, load_run_config
from atmorep_coupler.training.distributed import DistributedOptions, init_ray, train_distributed
from atmorep_coupler.training.trainer import Trainer


def bench_config(store: str, steps: int) -> RunConfig:
    run = load_run_config(config_path("tiny")).with_overrides(store=store, steps=steps)
    return dataclasses.replace(
        run,
        checkpoint=dataclasses.replace(run.checkpoint, every_steps=0),  # one checkpoint, at the end
        logging=dataclasses.replace(run.logging, every_steps=1, tensorboard=False),
        validation=dataclasses.replace(run.validation, every_steps=0),
    )


def single_process(config: RunConfig, warmup: int) -> dict:
    torch.set_num_threads(1)  # like one 1-CPU Ray worker
    trainer = Trainer(config)
    rates = []
    for _ in range(config.steps):
        start = time.perf_counter()
        samples = trainer.train_step()["samples"]
        rates.append(samples / (time.perf_counter() - start))
    return {"samples_per_s": statistics.median(rates[warmup:])}


def ray_run(config: RunConfig, workers: int, gpus: int, storage: Path, warmup: int) -> dict:
    options = DistributedOptions(num_workers=workers, run_name=f"bench_{workers}w", storage=storage,
                                 gpus_per_worker=gpus, progress=False, max_failures=0)
    start = time.perf_counter()
    train_distributed(config, options)
    wall = time.perf_counter() - start
    with (options.run_dir / "logs" / "train.csv").open(newline="") as handle:
        rates = [float(row["samples_per_s"]) for row in csv.DictReader(handle)]
    return {"samples_per_s": statistics.median(rates[warmup:]), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="tiny default store (generated if not given)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="logged steps left out of the median")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpus-per-worker", type=int, default=0, choices=(0, 1))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        store = args.store
        if store is None:
            store = str(Path(tmp) / "tiny.zarr")
            subprocess.run([sys.executable, "-m", "atmorep_coupler.data", "make-default", "--tiny", "--quiet",
                            "--out", store], check=True)
        config = bench_config(store, args.steps)
        report = {"config": "tiny", "steps": args.steps, "batch_size_per_worker": config.data.batch_size,
                  "device": "cuda" if args.gpus_per_worker else "cpu", "cpu_count": os.cpu_count(),
                  "torch": torch.__version__}
        if not args.gpus_per_worker:
            report["no_ray_1_process"] = single_process(config, args.warmup)
        import ray

        started = init_ray()
        report["ray_version"] = ray.__version__
        try:
            for workers in args.workers:
                report[f"ray_{workers}_workers"] = ray_run(config, workers, args.gpus_per_worker,
                                                           Path(tmp) / "runs", args.warmup)
        finally:
            if started:
                ray.shutdown()
        report["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
