"""Component-layer benchmark: cost of the BMI/native plumbing and of the forcing components, as JSON.

Per call (best of ``--repeat``): ``update`` of a prescribed SST on a 1° grid (netCDF, daily records,
6-hourly steps: reads a record every 4 steps, interpolates every step), of computed insolation on a
1° grid and of the CO2 ramp (a scalar: the base's per-step overhead); ``get_value`` into a caller
buffer, ``get_value_ptr``, ``get_field`` with and without unit conversion, ``set_field`` with unit
conversion and the import checks (a coupling FieldReceiver on a 1° grid), and
``save_state``/``load_state``.

    python bench/component_layer.py [--repeat 5] [--steps 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import time
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from atmorep_coupler.coupling.receiver import FieldReceiver
from components.forcing import CO2Scenario, Insolation, PrescribedField


def best_per_call(fn, calls: int, repeat: int) -> float:
    """Smallest mean wall time per call over ``repeat`` rounds of ``calls`` calls (seconds)."""
    fn()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return min(rounds)


def sst_file(folder: Path, days: int) -> Path:
    lat, lon = np.arange(89.5, -90.0, -1.0), np.arange(0.5, 360.0, 1.0)
    base = 28.0 * np.cos(np.deg2rad(lat))[:, None] ** 2 * np.ones(lon.size)
    data = np.stack([base + 0.1 * k for k in range(days)]).astype(np.float32)
    data[:, 40:60, 100:140] = np.nan
    times = [cftime.datetime(2000, 1, 1, calendar="noleap") + dt.timedelta(days=k) for k in range(days)]
    ds = xr.Dataset(
        {"tos": (("time", "lat", "lon"), data, {"units": "degC"})},
        coords={
            "time": times,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    path = folder / "sst.nc"
    ds.to_netcdf(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    clock = {"start": "2000-01-01", "time_step": "PT6H", "calendar": "noleap"}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        days = args.steps * args.repeat // 4 + 4
        sst = PrescribedField.from_config(
            {**clock, "path": str(sst_file(folder, days)), "variable": "tos", "units": "K"}
        )
        results["prescribed_1deg_update_ms"] = 1e3 * best_per_call(sst.update, args.steps, args.repeat)
        buffer = np.empty(sst.get_grid_size(0), dtype=np.float32)
        results["get_value_1deg_ms"] = 1e3 * best_per_call(lambda: sst.get_value("tos", buffer), 50, args.repeat)
        results["get_value_ptr_us"] = 1e6 * best_per_call(lambda: sst.get_value_ptr("tos"), 200, args.repeat)
        results["get_field_1deg_ms"] = 1e3 * best_per_call(lambda: sst.get_field("tos"), 50, args.repeat)
        results["get_field_1deg_to_degC_ms"] = 1e3 * best_per_call(
            lambda: sst.get_field("tos", units="degC"), 50, args.repeat
        )
        state = folder / "sst.npz"
        results["save_state_1deg_ms"] = 1e3 * best_per_call(lambda: sst.save_state(state), 10, args.repeat)
        results["load_state_1deg_ms"] = 1e3 * best_per_call(lambda: sst.load_state(state), 10, args.repeat)
        sst.finalize()

        insolation = Insolation.from_config({**clock, "grid": {"type": "regular_latlon", "nlat": 180, "nlon": 360}})
        results["insolation_1deg_update_ms"] = 1e3 * best_per_call(insolation.update, args.steps, args.repeat)
        co2 = CO2Scenario.from_config({**clock, "ramp": {}})
        results["co2_ramp_update_us"] = 1e6 * best_per_call(co2.update, args.steps * 10, args.repeat)

        receiver = FieldReceiver.from_config(
            {
                **clock,
                "grid": {"type": "regular_latlon", "nlat": 180, "nlon": 360},
                "fields": [{"name": "t_eq", "units": "K"}],
            }
        )
        t_eq = xr.DataArray(np.full((180, 360), 20.0), dims=("latitude", "longitude"), attrs={"units": "degC"})
        results["set_field_1deg_degC_checked_ms"] = 1e3 * best_per_call(
            lambda: receiver.set_field("t_eq", t_eq), 50, args.repeat
        )
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "repeat": args.repeat,
                **{k: round(v, 4) for k, v in results.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
