"""The coarse model's climatological error, for the hybrid's large-scale relaxation:

    python -m atmorep_coupler.analysis.coarse_bias --coarse COARSE_RUN_DIR --truth STORE --out coarse_bias.zarr

A coarse model relaxed toward at run time brings its own climate: its zonal means are off by a bias that
barely changes from one year to the next. Measured over a run of the coarse model alone in the *training*
period (``coupling_configs/coarse_alone.yaml`` with ``run.start``/``run.end`` in the first year), against
the truth at the same times, that bias is a correction learned from training data only: the component
subtracts it from the coarse state before relaxing toward it
(``large_scales.bias``, :mod:`atmorep_coupler.component.large_scales`).

The bias is the time mean, by calendar month, of the zonal mean of (coarse model mapped conservatively to
the truth's grid minus truth), per field and level: ``[month (1..12), level, latitude]`` in the fields'
units, written as a zarr store with one variable per field. The first ``--skip-days`` of the run (the
coarse model starts on the truth's weather) are left out; every calendar month must keep at least one time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from atmorep_coupler.analysis.climate import on_truth_grid, read_run
from atmorep_coupler.errors import AtmoRepError, DataError

__all__ = ["build_parser", "coarse_bias", "main", "monthly_mean"]

FIELDS = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind")  # the default model's


def monthly_mean(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``values [time, ...]`` -> the mean over the times of each calendar month ``[12, ...]`` (January first;
    NaN for a month without times)."""
    month = times.astype("datetime64[M]").astype(np.int64) % 12
    counts = np.bincount(month, minlength=12).astype(np.float64)
    one_hot = np.eye(12)[month]  # [time, month]: every month's mean as one matrix product
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.tensordot(one_hot / counts, values, axes=(0, 0))


def coarse_bias(coarse_dir: Path, truth_store: str | Path, *, levels=(250.0, 500.0, 700.0, 850.0),
                fields=FIELDS, skip_days: float = 10.0, coarse_store: str = "classical.zarr",
                whole_year: bool = True) -> xr.Dataset:
    """The monthly zonal-mean error of a coarse-alone run against the truth (module docs); ``whole_year``:
    refuse a run that leaves a calendar month without times (else that month's bias is NaN)."""
    from atmorep_coupler.data import open_store

    times, lat, lon, coarse = read_run(Path(coarse_dir) / coarse_store, fields, levels)
    keep = times >= times[0] + np.timedelta64(int(skip_days * 86400), "s")
    times = times[keep]
    truth = open_store(truth_store)
    missing = [str(t)[:19] for t in times if t not in truth.times]
    if missing:
        raise DataError(f"truth store {truth.path} lacks the coarse run's times {missing[:3]}; run the coarse model "
                        "inside the store's period")
    index = np.array([truth.time_index(t) for t in times])
    tlat, tlon = np.asarray(truth.latitudes), np.asarray(truth.longitudes)
    counts = np.bincount(times.astype("datetime64[M]").astype(np.int64) % 12, minlength=12)
    if whole_year and (counts == 0).any():
        absent = [int(m) + 1 for m in np.flatnonzero(counts == 0)]
        raise DataError(f"{coarse_dir}: the coarse run has no times in calendar months {absent} after its first "
                        f"{skip_days:g} days; run it over a whole year of the training period")
    variables = {}
    for f in fields:
        mapped = on_truth_grid(coarse[f][keep], lat, lon, tlat, tlon)
        error = (mapped - truth.read(f, time=index, levels=list(levels))).mean(axis=-1)  # [time, level, lat]
        variables[f] = (("month", "level", "latitude"), monthly_mean(error, times),
                        {"units": truth.units(f), "long_name": f"coarse model minus truth, zonal mean: {f}"})
    return xr.Dataset(variables, coords={"month": np.arange(1, 13), "level": np.asarray(levels, np.float64),
                                         "latitude": tlat},
                      attrs={"period": f"{str(times[0])[:19]} .. {str(times[-1])[:19]}", "times": int(times.size),
                             "source": str(coarse_dir), "truth": str(truth.path)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.analysis.coarse_bias", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coarse", required=True, type=Path, help="a coarse-alone run's --out folder (training period)")
    parser.add_argument("--truth", required=True, help="the truth store")
    parser.add_argument("--out", required=True, type=Path, help="the bias store to write (zarr)")
    parser.add_argument("--skip-days", type=float, default=10.0, help="days left out at the start (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        bias = coarse_bias(args.coarse, args.truth, skip_days=args.skip_days)
    except AtmoRepError as exc:
        print(f"error: {exc}")
        return 2
    bias.to_zarr(args.out, mode="w", consolidated=False)
    worst = {f: float(np.sqrt((bias[f].values ** 2).mean())) for f in bias.data_vars}
    print(f"{args.out}: RMS of the monthly zonal-mean bias per field: {worst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
