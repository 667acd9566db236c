"""Kill coupled runs with SIGKILL at random instants, resume them, and check nothing was lost; print JSON.

Each case is a coupled run with restarts, driven as a user drives it: ``python -m atmorep_coupler.run``
in a subprocess, killed at a seeded random instant (a random simulated hour read from its progress bar
plus a random fraction of a second, or a random instant of its start-up), resumed (``restart.resume:
auto``) and killed again later in the run, then resumed to its end; then a fresh run, and so on. After every kill every
output store must open and read; at the end the outputs must be bitwise equal to those of an
uninterrupted run and no temporary file (``*.partial``, ``*.tmp``) may be left. Cases:

- ``analytic``: two analytic components (``tests/coupling/analytic.py``) on different grids, an averaged
  conservative coupling one way and a lagged vector the other, conservation diagnostics, outputs every
  6 h and every day, restarts every 12 h, two days;
- ``atmorep``: the AtmoRep component (a tiny checkpoint trained here on the tiny default store, two
  ensemble members) forced by the CO2 scenario and a prescribed SST, restarts every 6 h, 12 hours.

    python bench/kill.py [--kills 24] [--seed 0] [--cases analytic atmorep]

Per case: kills tried, clean and failed (with the reason), how many landed after the first output and
before the run's last restart, what each left (records per store, the restart ``latest`` named), and
the seconds the campaign took.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
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
    hours: float  # simulated hours of the run


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
    return Case("analytic", _write(folder / "analytic.yaml", config), ["--allow-import", "tests"], 48.0)


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
        "outputs": [{"component": "atmorep", "variables": ["temperature", "temperature_member_0", "temperature_member_1"],
                     "interval": "PT3H", "reduction": "mean", "path": "atm.zarr"}],
    }
    return Case("atmorep", _write(folder / "atmorep.yaml", config), [], 12.0)


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
def _command(case: Case, out: Path, *, progress: bool = False) -> list[str]:
    return [sys.executable, "-m", "atmorep_coupler.run", str(case.config), "--out", str(out),
            *([] if progress else ["--no-progress"]), *case.argv]


def _env() -> dict:
    """The runs' environment: the repository importable (tests.coupling.analytic), one thread, and a
    progress bar that reports every synchronisation interval at once (what the kills are timed by)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}


def run_to_end(case: Case, out: Path, timeout: float = 900) -> float:
    """Run (or resume) ``case`` into ``out`` to its end; the wall seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(_command(case, out), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{case.name}: run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


_HOURS = re.compile(rb"(\d+)/\d+ h")


def kill_once(case: Case, out: Path, rng: random.Random, *, after_hour: float = 0.0) -> dict | None:
    """Start (or resume) the run and SIGKILL it at a random instant; None if it ended first.

    Mostly at a random point of the simulation after ``after_hour`` (the progress bar says how far it
    got: a random number of simulated hours, then a random fraction of a second more, so kills land
    inside steps, output writes and restart saves alike), sometimes at a random instant of the start-up
    (imports, set-up, the start restart)."""
    process = subprocess.Popen(_command(case, out, progress=True), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    log = bytearray()
    reader = threading.Thread(target=lambda: _drain(process.stderr, log), daemon=True)
    reader.start()
    start = time.perf_counter()
    during_setup = rng.random() < 0.15
    target = rng.uniform(after_hour, case.hours)
    setup_delay = rng.uniform(0.0, 8.0)
    extra = rng.uniform(0.0, 1.0)
    while process.poll() is None:
        hours = [int(h) for h in _HOURS.findall(bytes(log))]
        reached = (time.perf_counter() - start > setup_delay) if during_setup else (hours and hours[-1] >= target)
        if reached:
            time.sleep(0.0 if during_setup else extra)
            process.send_signal(signal.SIGKILL)
            process.wait()
            reader.join(5)
            return {"after_s": round(time.perf_counter() - start, 2),
                    "at_hour": None if during_setup else round(target, 1)}
        time.sleep(0.02)
    reader.join(5)
    if process.returncode != 0:
        raise RuntimeError(f"{case.name}: run failed before the kill ({process.returncode}):\n"
                           f"{bytes(log).decode(errors='replace')[-3000:]}")
    return None


def _drain(stream, log: bytearray) -> None:
    for chunk in iter(lambda: stream.read1(4096), b""):
        log.extend(chunk)
    stream.close()


def outputs_open(out: Path) -> dict[str, int]:
    """Every output store under ``out`` opens (consolidated metadata) and every value reads; the records
    of each store."""
    records = {}
    for store in sorted(out.glob("*.zarr")):
        with xr.open_zarr(store, decode_times=False) as ds:
            for name in ds.variables:
                ds[name].values  # noqa: B018 -- reading every chunk is the check
            records[store.name] = int(ds.sizes.get("time", 0))
    return records


def latest_restart(out: Path) -> str | None:
    pointer = next(out.glob("restarts/*/latest"), None)
    return pointer.read_text().strip() if pointer is not None else None


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


def campaign(case: Case, folder: Path, kills: int, rng: random.Random, *, per_run: int = 2) -> dict:
    """Kill runs of ``case`` ``kills`` times at random instants, ``per_run`` kills per run (the second in
    the resumed run, later than the first), resume each to its end and compare it with an uninterrupted
    run. Returns tried/clean/failed, what each kill left, and the reasons of failures."""
    reference = folder / f"{case.name}-reference"
    span = run_to_end(case, reference)
    out = folder / f"{case.name}-killed"
    tried, failed, failures, kills_at = 0, 0, [], []
    while tried < kills:
        _reset(out)
        run_kills, problems, after = 0, [], 0.0
        for _ in range(min(per_run, kills - tried)):
            kill = kill_once(case, out, rng, after_hour=after)
            if kill is None:  # the run ended before the kill
                break
            run_kills += 1
            after = kill["at_hour"] or 0.0
            try:  # what the kill left: the records of each store, the restart 'latest' names
                kills_at.append(kill | {"records": outputs_open(out), "latest": latest_restart(out)})
            except Exception as exc:  # noqa: BLE001 -- any failure to open is the finding
                problems.append(f"kill ({kill}): outputs do not open: {type(exc).__name__}: {exc}")
        if not run_kills:
            continue
        try:
            run_to_end(case, out)
            if left := strays(out):
                problems.append(f"stray files after the resumed run: {left}")
            if diff := differences(reference, out):
                problems.append(f"outputs differ from the uninterrupted run: {diff}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"resume failed: {exc}")
        tried += run_kills
        failed += run_kills if problems else 0
        failures += problems
    return {"tried": tried, "clean": tried - failed, "failed": failed, "reference_s": round(span, 1),
            "kills_with_outputs": sum(1 for k in kills_at if any(k["records"].values())),
            "kills_before_the_end": sum(1 for k in kills_at if k["latest"] != latest_restart(reference)),
            "kills": kills_at, "failures": failures}


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
            print(json.dumps({name: result["cases"][name]}), file=sys.stderr, flush=True)  # a long campaign's parts
    result["tried"] = sum(c["tried"] for c in result["cases"].values())
    result["failed"] = sum(c["failed"] for c in result["cases"].values())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
