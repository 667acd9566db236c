"""Kill coupled runs with SIGKILL at random instants, resume them, and check nothing was lost; print JSON.

Each case is a coupled run with restarts, driven as a user drives it: ``python -m atmorep_coupler.run``
in a subprocess, killed at a seeded random instant, again and again (each kill lands in the run the
previous one left, resumed with ``restart.resume: auto``), then run to its end. After every kill every
output store must open and read; at the end the outputs must be bitwise equal to those of an
uninterrupted run and no temporary file (``*.partial``, ``*.tmp``) may be left. Cases:

- ``analytic``: two analytic components (``tests/coupling/analytic.py``) on different grids, an averaged
  conservative coupling one way and a lagged vector the other, conservation diagnostics, outputs every
  6 h and every day, restarts every 12 h, two days;
- ``atmorep``: the AtmoRep component (a tiny checkpoint trained here on the tiny default store, two
  ensemble members) forced by the CO2 scenario and a prescribed SST, restarts every 6 h, 12 hours.

    python bench/kill.py [--kills 24] [--seed 0] [--cases analytic atmorep]

Per case: kills tried, clean and failed (with the reason), and the seconds the campaign took.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
STRAY_SUFFIXES = (".partial", ".tmp")


@dataclass
class Case:
    name: str
    config: Path
    argv: list[str]  # extra arguments of every run (trust the test package, ...)


def analytic_case(folder: Path) -> Case:
    """Two analytic components, both coupling directions, two output streams, restarts every 12 h."""
    analytic = "tests.coupling.analytic:Analytic"
    config = {
        "version": 1,
        "run": {"name": "killed", "start": "2000-01-01T00:00:00", "end": "2000-01-03T00:00:00", "calendar": "noleap",
                "restart": {"every": "PT12H"}},
        "grids": {"g6": {"type": "regular_latlon", "nlat": 6, "nlon": 12},
                  "g8": {"type": "gaussian", "nlat": 8, "nlon": 16}},
        "components": {
            "a": {"kind": analytic, "grid": "g6", "timestep": "PT1H", "config": {"sleep_seconds": 0.04}},
            "b": {"kind": analytic, "grid": "g8", "timestep": "PT3H", "config": {"nlat": 8, "nlon": 16, "gaussian": True}},
        },
        "couplings": [
            {"from": "a", "to": "b", "fields": [{"src": "signal", "dst": "received"}], "period": "PT6H",
             "time_reduction": "average", "remap": {"method": "conservative"}, "conservation": {"check": True}},
            {"from": "b", "to": "a", "fields": [{"src": ["u", "v"], "dst": ["u_received", "v_received"]}],
             "period": "PT6H", "lag": "PT6H", "time_reduction": "average", "remap": {"method": "bilinear"}},
        ],
        "outputs": [
            {"component": "b", "variables": ["received", "received_sum"], "interval": "PT6H", "reduction": "mean",
             "path": "b6h.zarr"},
            {"component": "a", "variables": ["signal", "u_received"], "interval": "P1D", "reduction": "max",
             "path": "a1d.zarr"},
        ],
    }
    return Case("analytic", _write(folder / "analytic.yaml", config), ["--allow-import", "tests"])


def atmorep_case(folder: Path, store: Path, checkpoint: Path) -> Case:
    """The AtmoRep component with two members, forced by the CO2 scenario and the store's SST."""
    from atmorep_coupler.data import open_store
    from atmorep_coupler.regrid import LatLonGrid

    data = open_store(store)
    LatLonGrid.from_centers(data.latitudes, data.longitudes).to_scrip(folder / "atm_grid.nc")
    instant = {"period": "PT3H", "lag": 0, "time_reduction": "instant"}
    config = {
        "version": 1,
        "run": {"name": "killed-atmorep", "start": "2000-01-01T12:00:00", "end": "2000-01-02T00:00:00",
                "restart": {"every": "PT6H"}},
        "grids": {"atm": {"type": "curvilinear", "file": "atm_grid.nc"}},
        "components": {
            "co2": {"kind": "co2_scenario", "timestep": "PT3H", "config": {"quantity": "co2", "ramp": {}}},
            "sst": {"kind": "prescribed", "grid": "atm", "timestep": "PT3H",
                    "config": {"path": str(store), "variable": "sea_surface_temperature"}},
            "atmorep": {"kind": "atmorep", "grid": "atm", "timestep": "PT3H", "ensemble": {"members": 2},
                        "config": {"checkpoint": str(checkpoint), "initial_condition": str(store),
                                   "tile_batch_size": 64}},
        },
        "couplings": [
            {"from": "co2", "to": "atmorep", "fields": [{"src": "co2", "dst": "co2_equivalent"}], **instant},
            {"from": "sst", "to": "atmorep",
             "fields": [{"src": "sea_surface_temperature", "dst": "sea_surface_temperature"}], **instant},
        ],
        "outputs": [{"component": "atmorep", "variables": ["temperature", "temperature_members"],
                     "interval": "PT3H", "reduction": "mean", "path": "atm.zarr"}],
    }
    return Case("atmorep", _write(folder / "atmorep.yaml", config), [])


def tiny_checkpoint(store: Path, path: Path, steps: int = 2) -> Path:
    """The packaged tiny config trained ``steps`` steps on ``store`` (fields temperature, wind, SST, CO2)."""
    import torch

    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(load_run_config(config_path("tiny")).with_overrides(store=str(store)))
    for _ in range(steps):
        trainer.train_step()
    return trainer.save_checkpoint(path)


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ running
def _command(case: Case, out: Path) -> list[str]:
    return [sys.executable, "-m", "atmorep_coupler.run", str(case.config), "--out", str(out), "--no-progress",
            *case.argv]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1"}


def run_to_end(case: Case, out: Path, timeout: float = 900) -> float:
    """Run (or resume) ``case`` into ``out`` to its end; the wall seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(_command(case, out), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{case.name}: run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def kill_once(case: Case, out: Path, delay: float) -> bool:
    """Start (or resume) the run and SIGKILL it after ``delay`` seconds; False if it ended first."""
    process = subprocess.Popen(_command(case, out), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        process.wait(delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        return True
    error = process.stderr.read()
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"{case.name}: run failed before the kill ({process.returncode}):\n{error[-3000:]}")
    return False


def outputs_open(out: Path) -> None:
    """Every output store under ``out`` opens (consolidated metadata) and every value reads."""
    for store in sorted(out.glob("*.zarr")):
        with xr.open_zarr(store, decode_times=False) as ds:
            for name in ds.variables:
                ds[name].values  # noqa: B018 -- reading every chunk is the check


def strays(out: Path) -> list[str]:
    """Temporary files or folders a kill left behind under ``out``."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(STRAY_SUFFIXES))


def differences(reference: Path, out: Path) -> list[str]:
    """What differs between two finished runs' outputs (bitwise; NaN equals NaN)."""
    found = []
    stores = sorted(p.name for p in reference.glob("*.zarr"))
    if stores != sorted(p.name for p in out.glob("*.zarr")):
        return [f"stores {stores} vs {sorted(p.name for p in out.glob('*.zarr'))}"]
    for name in stores:
        with xr.open_zarr(reference / name, decode_times=False) as a, xr.open_zarr(out / name, decode_times=False) as b:
            if dict(a.sizes) != dict(b.sizes) or set(a.variables) != set(b.variables):
                found.append(f"{name}: sizes {dict(a.sizes)} vs {dict(b.sizes)}")
                continue
            for var in a.variables:
                x, y = a[var].values, b[var].values
                if x.dtype != y.dtype or x.tobytes() != y.tobytes():
                    found.append(f"{name}: {var} differs")
    for csv in ("conservation.csv",):
        if (reference / csv).exists() and (reference / csv).read_text() != (out / csv).read_text():
            found.append(f"{csv} differs")
    return found


def campaign(case: Case, folder: Path, kills: int, rng: random.Random) -> dict:
    """Kill a run of ``case`` ``kills`` times at random instants, resume it to its end, compare with an
    uninterrupted run. Returns tried/clean/failed and the reasons."""
    reference = folder / f"{case.name}-reference"
    span = run_to_end(case, reference)
    out = folder / f"{case.name}-killed"
    tried, failures, delays = 0, [], []
    attempts = 0
    while tried < kills and attempts < 10 * kills:
        attempts += 1
        delay = rng.uniform(0.1, 0.8 * span)  # a resumed run has less to do than the reference
        if not kill_once(case, out, delay):  # the run finished before the kill: start it over
            _reset(out)
            continue
        tried += 1
        delays.append(round(delay, 2))
        try:
            outputs_open(out)
        except Exception as exc:  # noqa: BLE001 -- any failure to open is the finding
            failures.append(f"kill {tried} at {delay:.2f} s: outputs do not open: {type(exc).__name__}: {exc}")
    try:
        run_to_end(case, out)
        left = strays(out)
        diff = differences(reference, out)
        if left:
            failures.append(f"stray files after the resumed run: {left}")
        if diff:
            failures.append(f"outputs differ from the uninterrupted run: {diff}")
    except Exception as exc:  # noqa: BLE001
        failures.append(f"resume failed: {exc}")
    failed = min(len(failures), tried)
    return {"tried": tried, "clean": tried - failed, "failed": failed, "reference_s": round(span, 1),
            "kill_delays_s": delays, "failures": failures}


def _reset(out: Path) -> None:
    import shutil

    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24, help="kills in all, split over the cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", default=["analytic", "atmorep"], choices=["analytic", "atmorep"])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    result = {"seed": args.seed, "cases": {}, "machine": {"cpus": os.cpu_count(), "note": "shared machine"}}
    with tempfile.TemporaryDirectory(prefix="atmorep_kill_") as tmp:
        folder = Path(tmp)
        per_case = -(-args.kills // len(args.cases))
        for name in args.cases:
            start = time.perf_counter()
            if name == "analytic":
                case = analytic_case(folder)
            else:
                store = folder / "tiny.zarr"
                subprocess.run([sys.executable, "-m", "atmorep_coupler.data", "make-default", "--tiny", "--quiet",
                                "--out", str(store)], check=True, env=_env(), capture_output=True)
                case = atmorep_case(folder, store, tiny_checkpoint(store, folder / "tiny.pt"))
            result["cases"][name] = campaign(case, folder, per_case, rng) | {
                "seconds": round(time.perf_counter() - start, 1)}
    result["tried"] = sum(c["tried"] for c in result["cases"].values())
    result["failed"] = sum(c["failed"] for c in result["cases"].values())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
