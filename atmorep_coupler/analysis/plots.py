"""Plots of a coupled run against the truth run (the default dataset store): maps at a few times,
global-mean time series and the zonal-mean climatology.

    python -m atmorep_coupler.analysis.plots RUN_DIR --truth STORE [--out DIR] [--field temperature] [--level 500]

``RUN_DIR`` is a coupled run's ``--out`` folder holding ``atmorep.zarr`` (the multiformer's output of
coupling_configs/default.yaml). :func:`plot_run` is what the quickstart report calls; it returns the
PNG paths it wrote. Global means weight rows by their band areas (``verification.scores.latitude_weights``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from atmorep_coupler.data import open_store  # noqa: E402
from atmorep_coupler.data.store import ERA5Store  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.verification.scores import latitude_weights  # noqa: E402

__all__ = ["build_parser", "global_mean", "plot_run", "run_and_truth", "zonal_panels"]

OUTPUT_STORE = "atmorep.zarr"


def output_axes(ds: xr.Dataset | xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """1-D ``(latitudes, longitudes)`` of a run's output (rows/columns of 2-D curvilinear coordinates).

    A tolerant reader: runs written before the axes were named ``latitude``/``longitude`` (and files
    from elsewhere) call them ``lat``/``lon``."""
    lat = np.asarray(ds["latitude"].values if "latitude" in ds.coords else ds["lat"].values)
    lon = np.asarray(ds["longitude"].values if "longitude" in ds.coords else ds["lon"].values)
    return (lat[:, 0], lon[0]) if lat.ndim == 2 else (lat, lon)


def run_and_truth(run_dir: Path, truth: ERA5Store, field: str, level: float | None) -> tuple[np.ndarray, ...]:
    """``(times, lat, lon, run, truth)``: the run's ``field`` (at ``level`` hPa, or all levels when None:
    dims ``time, level, y, x``) and the truth store's at the same times and on the same grid."""
    path = Path(run_dir) / OUTPUT_STORE
    if not path.exists():
        raise DataError(f"{path}: not found; is {run_dir} the --out folder of a coupled run with an atmorep output?")
    with xr.open_zarr(path) as ds:
        if field not in ds:
            raise DataError(f"{path}: has no variable {field!r} (it has {sorted(ds.data_vars)})")
        da = ds[field]
        if level is not None:
            if level not in da.level.values:
                raise DataError(f"{path}: {field!r} has no level {level:g} hPa (levels {da.level.values.tolist()})")
            da = da.sel(level=[level])
        run = da.transpose("time", "level", ...).values.astype(np.float64)
        lat, lon = output_axes(da)
        times = da.time.values.astype("datetime64[ns]")
        levels = da.level.values.tolist()
    if not (np.allclose(lat, truth.latitudes) and np.allclose(lon, truth.longitudes)):
        raise DataError(f"{path}: the run's grid ({lat.size}x{lon.size}) is not the truth store's "
                        f"({truth.latitudes.size}x{truth.longitudes.size}); plot against the store the run started from")
    missing = [str(t) for t in times if t not in truth.times]
    if missing:
        raise DataError(f"truth store lacks the run's times {missing[:3]}...; use the store the run started from")
    index = np.array([truth.time_index(t) for t in times])
    reference = truth.read(field, time=index, levels=levels, units=None).astype(np.float64)
    return times, lat, lon, run, reference


def global_mean(values: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Area-weighted mean over the last two dims (lat, lon): rows weighted by band area, once."""
    return (values * latitude_weights(lat)[:, None]).mean(axis=(-2, -1))


def plot_run(run_dir: str | Path, truth_store: str | Path, out_dir: str | Path, *, field: str = "temperature",
             level: float = 500.0, map_times: int = 3) -> list[Path]:
    """Write ``maps_<field><level>.png``, ``global_mean_<field><level>.png`` and
    ``zonal_mean_<field>.png`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = open_store(truth_store)
    times, lat, lon, run, reference = run_and_truth(Path(run_dir), truth, field, level)
    units = truth.units(field)
    tag = f"{field}{level:g}"
    paths = [_maps(out / f"maps_{tag}.png", times, lat, lon, run[:, 0], reference[:, 0], field, level, units, map_times),
             _series(out / f"global_mean_{tag}.png", times, lat, run[:, 0], reference[:, 0], field, level, units)]
    times, lat, _, run, reference = run_and_truth(Path(run_dir), truth, field, None)
    with xr.open_zarr(Path(run_dir) / OUTPUT_STORE) as ds:
        levels = ds[field].level.values
    paths.append(_zonal(out / f"zonal_mean_{field}.png", lat, levels, run, reference, field, units))
    return paths


def _maps(path, times, lat, lon, run, truth, field, level, units, count) -> Path:
    picks = np.unique(np.linspace(0, len(times) - 1, count).round().astype(int))
    vmin, vmax = np.percentile(np.concatenate([run[picks].ravel(), truth[picks].ravel()]), [1, 99])
    fig, axes = plt.subplots(2, len(picks), figsize=(4.2 * len(picks), 5.2), squeeze=False, constrained_layout=True)
    for col, i in enumerate(picks):
        for row, (name, values) in enumerate((("coupled run", run), ("truth run", truth))):
            ax = axes[row, col]
            image = ax.pcolormesh(lon, lat, values[i], vmin=vmin, vmax=vmax, cmap="RdYlBu_r", shading="nearest")
            ax.set_title(f"{name}  {str(times[i])[:16]}", fontsize=9)
            ax.set_xlabel("longitude (°E)", fontsize=8)
            ax.set_ylabel("latitude (°N)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"{field} {level:g} hPa ({units})")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _series(path, times, lat, run, truth, field, level, units) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5), constrained_layout=True)
    ax.plot(times, global_mean(run, lat), label="coupled run (multiformer)")
    ax.plot(times, global_mean(truth, lat), label="truth run (dinosaur T21)", color="k", ls="--")
    ax.set_ylabel(f"global mean {field} {level:g} hPa ({units})")
    ax.legend()
    fig.autofmt_xdate()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _zonal(path, lat, levels, run, truth, field, units) -> Path:
    curves = {"coupled run": run.mean(axis=(0, -1)), "truth run": truth.mean(axis=(0, -1))}
    return zonal_panels(path, lat, levels, curves, f"zonal, time mean {field} ({units})",
                        {"truth run": {"color": "k", "ls": "--"}})


def zonal_panels(path: Path, lat, levels, curves: dict[str, np.ndarray], label: str,
                 styles: dict[str, dict] | None = None) -> Path:
    """One panel per level of curves against latitude (``curves[name]``: ``[level, lat]``); returns ``path``."""
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.2), squeeze=False, sharex=True,
                             constrained_layout=True)
    for k, level in enumerate(levels):
        for name, values in curves.items():
            axes[0, k].plot(lat, values[k], label=name, **(styles or {}).get(name, {}))
        axes[0, k].set_title(f"{level:g} hPa", fontsize=9)
        axes[0, k].set_xlabel("latitude (°N)", fontsize=8)
    axes[0, 0].set_ylabel(label, fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.analysis.plots", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the coupled run's --out folder (holds atmorep.zarr)")
    parser.add_argument("--truth", required=True, type=Path, help="the truth store (the run's initial condition)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    parser.add_argument("--field", default="temperature")
    parser.add_argument("--level", type=float, default=500.0, help="pressure level of maps and series (hPa)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in plot_run(args.run_dir, args.truth, args.out or args.run_dir / "plots", field=args.field, level=args.level):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
