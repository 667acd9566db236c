"""Climate diagnostics of a run against the truth: zonal means, transient eddies, spectra, trend.

    python -m atmorep_coupler.analysis.climate --run RUN_DIR --truth STORE [--coarse COARSE_RUN_DIR] --out DIR

Short-lead skill does not make a climate: a hybrid can score well for days and still drift, lose its
eddies or fill its small scales with noise. These diagnostics judge a long run by its statistics, each
against the truth over the same times and on the same grid:

- **zonal means**: the time-mean, zonal-mean field ``[level, lat]`` (temperature and zonal wind: the
  jets and the thermal structure); the error is the area-weighted RMS over latitudes and levels;
- **transient eddies**: kinetic energy ``½ (u'² + v'²)`` and temperature variance ``T'²``, primes being
  departures from the point's time mean, time-averaged (storm tracks);
- **power spectra by total wavenumber** ``n`` of single fields, averaged over times, from a spherical
  harmonic transform with an exact quadrature on each field's own grid (Gauss–Legendre on Gaussian rows,
  Fejér on regular cell-centre rows; :mod:`atmorep_coupler.regrid.harmonics`): the speckle or blockiness
  of a field shows up as excess power at large ``n``;
- **global-mean trend** of temperature (least squares, per year).

Area weights are cell areas (``sin`` of the upper minus ``sin`` of the lower cell edge, edges midway
between latitudes and at the poles) normalized to mean 1, applied once. The functions take numpy
arrays ``[time, (level,) lat, lon]``; :func:`compare` and the command line read coupled-run outputs and
the truth store and write ``climate.json`` and PNG figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from atmorep_coupler.analysis.plots import output_axes, zonal_panels  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.regrid import harmonics  # noqa: E402
from atmorep_coupler.verification.scores import latitude_weights  # noqa: E402

__all__ = [
    "area_mean",
    "build_parser",
    "compare",
    "latitude_weights",
    "on_truth_grid",
    "power_spectrum",
    "read_run",
    "transient_eddy_kinetic_energy",
    "transient_variance",
    "trend_per_year",
    "zonal_mean",
]

DAYS_PER_YEAR = 365.2425
FIELDS = ("temperature", "u_component_of_wind", "v_component_of_wind")


# ------------------------------------------------------------------------------------------ statistics
def area_mean(x: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Area-weighted mean over the last two dims (lat, lon)."""
    w = latitude_weights(lat)
    return (np.asarray(x, np.float64).mean(axis=-1) * w).mean(axis=-1)


def zonal_mean(x: np.ndarray) -> np.ndarray:
    """Time-mean, zonal-mean field: ``[time, ..., lat, lon]`` -> ``[..., lat]``."""
    return np.asarray(x, np.float64).mean(axis=(0, -1))


def transient_variance(x: np.ndarray) -> np.ndarray:
    """Time mean of the squared departure from each point's time mean: ``[time, ...] -> [...]``."""
    x = np.asarray(x, np.float64)
    return ((x - x.mean(axis=0)) ** 2).mean(axis=0)


def transient_eddy_kinetic_energy(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``½ (u'² + v'²)`` time-averaged, primes from each point's time mean (J kg-1 for winds in m s-1)."""
    return 0.5 * (transient_variance(u) + transient_variance(v))


def trend_per_year(times: np.ndarray, series: np.ndarray) -> float:
    """Least-squares slope of ``series`` against ``times`` (datetime64), per year of 365.2425 days."""
    days = (np.asarray(times, "datetime64[s]") - np.asarray(times, "datetime64[s]")[0]) / np.timedelta64(86400, "s")
    years = days / DAYS_PER_YEAR
    design = np.stack([years - years.mean(), np.ones_like(years)], axis=1)
    slope, _ = np.linalg.lstsq(design, np.asarray(series, np.float64), rcond=None)[0]
    return float(slope)


# ------------------------------------------------------------------------------------------ spectra
def _gaussian_latitudes(nlat: int) -> np.ndarray:
    return np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(nlat)[0][::-1]))


def power_spectrum(x: np.ndarray, lat: np.ndarray, truncation: int | None = None) -> np.ndarray:
    """Power per total wavenumber ``n = 0 .. truncation`` of fields ``[..., lat, lon]`` on a global Gaussian or
    regular cell-centre grid, ``[..., n]`` (:func:`atmorep_coupler.regrid.harmonics.power_spectrum`: exact
    quadratures, no remapping). ``truncation``: default ``(2 nlat - 1) / 3`` rounded down (the truncation whose
    quadratic, alias-free grid has these rows: T21 on 32, T15 on 24)."""
    x = np.asarray(x, np.float64)
    truncation = (2 * x.shape[-2] - 1) // 3 if truncation is None else int(truncation)
    return harmonics.power_spectrum(x, lat, truncation)


# ------------------------------------------------------------------------------------------ runs
def read_run(path: Path, fields, levels) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(times, lat, lon, {field: [time, level, lat, lon]})`` from a coupled run's output store."""
    if not Path(path).exists():
        raise DataError(f"{path}: not found; give a coupled run's --out folder holding it")
    with xr.open_zarr(path) as ds:
        missing = [f for f in fields if f not in ds]
        if missing:
            raise DataError(f"{path}: has no variables {missing} (it has {sorted(ds.data_vars)})")
        lat, lon = output_axes(ds)
        data = {f: ds[f].sel(level=list(levels)).transpose("time", "level", ...).values.astype(np.float64)
                for f in fields}
        return ds.time.values.astype("datetime64[ns]"), lat, lon, data


def on_truth_grid(values: np.ndarray, lat, lon, truth_lat, truth_lon) -> np.ndarray:
    """Map a run's fields conservatively onto the truth's grid (nothing to do when they share it)."""
    if lat.size == truth_lat.size and np.allclose(lat, truth_lat) and np.allclose(lon, truth_lon):
        return values
    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

    gaussian = _gaussian_latitudes(lat.size)
    if np.allclose(lat, gaussian, atol=1e-6) or np.allclose(lat, gaussian[::-1], atol=1e-6):
        source = GaussianGrid(lat.size, lon.size, lat_order="descending" if lat[0] > lat[-1] else "ascending")
    else:
        source = LatLonGrid.from_centers(lat, lon)
    mapping = Regridder(source, LatLonGrid.from_centers(truth_lat, truth_lon), "conservative_normed", progress=False)
    return mapping.apply(values)


def diagnostics(times, lat, data: dict[str, np.ndarray], levels, native: tuple | None = None) -> dict:
    """Every diagnostic of one run (fields ``[time, level, lat, lon]`` on the truth's grid). ``native``:
    ``(lat, fields)`` on the run's own grid, where the spectra are taken (a coarse field mapped to a finer
    grid is blocky: the steps would show as spurious power at the large wavenumbers)."""
    out = {"zonal_mean": {f: zonal_mean(data[f]) for f in ("temperature", "u_component_of_wind")}}
    out["eddy_kinetic_energy"] = transient_eddy_kinetic_energy(data["u_component_of_wind"], data["v_component_of_wind"])
    out["temperature_variance"] = transient_variance(data["temperature"])
    spectral_lat, spectral = native or (lat, data)
    out["spectra"] = {f: power_spectrum(spectral[f], spectral_lat).mean(axis=0) for f in FIELDS}
    series = area_mean(data["temperature"], lat)  # [time, level]
    out["global_mean_temperature"] = series
    out["trend_K_per_year"] = [trend_per_year(times, series[:, k]) for k in range(len(levels))]
    return out


def _zonal_error(a: np.ndarray, b: np.ndarray, lat: np.ndarray) -> float:
    """Area-weighted RMS over latitudes and levels of two zonal means ``[level, lat]``."""
    return float(np.sqrt((((a - b) ** 2) * latitude_weights(lat)).mean()))


def summarise(name: str, run: dict, truth: dict, lat, levels) -> dict:
    """The scores of one run's diagnostics against the truth's (see :func:`compare`)."""
    w = latitude_weights(lat)
    eddy = {k: [float((run[k][i].mean(-1) * w).mean() / (truth[k][i].mean(-1) * w).mean()) for i in range(len(levels))]
            for k in ("eddy_kinetic_energy", "temperature_variance")}
    top = min(run["spectra"][FIELDS[0]].shape[-1], truth["spectra"][FIELDS[0]].shape[-1])  # common truncation + 1
    spectra = {f: (run["spectra"][f][:, 1:top] / truth["spectra"][f][:, 1:top]).tolist() for f in FIELDS}
    worst = {f: float(np.max(np.abs(np.log(np.asarray(v))))) for f, v in spectra.items()}
    return {
        "name": name,
        "zonal_mean_rmse": {f: _zonal_error(run["zonal_mean"][f], truth["zonal_mean"][f], lat)
                            for f in run["zonal_mean"]},
        "eddy_ratio_to_truth": eddy,
        "spectrum_ratio_to_truth": spectra,
        "spectrum_worst_factor": {f: float(np.exp(v)) for f, v in worst.items()},
        "trend_K_per_year": run["trend_K_per_year"],
        "trend_minus_truth_K_per_year": [a - b for a, b in zip(run["trend_K_per_year"], truth["trend_K_per_year"])],
    }


def compare(run_dir: Path, truth_store: str | Path, out: Path, *, coarse_dir: Path | None = None,
            levels=(250.0, 500.0, 700.0, 850.0), run_store: str = "atmorep.zarr",
            coarse_store: str = "classical.zarr") -> dict:
    """Diagnose the run (``run_dir/atmorep.zarr``), the truth at the same times and, optionally, the coarse
    model alone (``coarse_dir/classical.zarr``, mapped conservatively to the truth's grid, over the run's
    times: a coarse run that goes on longer is cut); write
    ``climate.json`` and the figures into ``out`` and return the JSON content.

    Scores: ``zonal_mean_rmse`` (K, m s-1) of temperature and zonal wind; ``eddy_ratio_to_truth`` per
    level (area means of transient eddy kinetic energy and temperature variance, run over truth);
    ``spectrum_ratio_to_truth`` per field, level and ``n = 1 .. T`` (spectra on each run's own grid, up to
    the lower of the two truncations), and its worst factor; the global-mean
    temperature trend per level and its difference from the truth's."""
    from atmorep_coupler.data import open_store

    out.mkdir(parents=True, exist_ok=True)
    times, lat, lon, run = read_run(Path(run_dir) / run_store, FIELDS, levels)
    truth_store = open_store(truth_store)
    missing = [str(t) for t in times if t not in truth_store.times]
    if missing:
        raise DataError(f"truth store {truth_store.path} lacks the run's times {missing[:3]}; use the store the run "
                        "started from")
    index = np.array([truth_store.time_index(t) for t in times])
    truth = {f: truth_store.read(f, time=index, levels=list(levels)).astype(np.float64) for f in FIELDS}
    tlat, tlon = np.asarray(truth_store.latitudes), np.asarray(truth_store.longitudes)
    native = (lat, run)
    run = {f: on_truth_grid(v, lat, lon, tlat, tlon) for f, v in run.items()}
    series = {"truth": diagnostics(times, tlat, truth, levels),
              "hybrid": diagnostics(times, tlat, run, levels, native)}
    if coarse_dir is not None:
        ctimes, clat, clon, coarse = read_run(Path(coarse_dir) / coarse_store, FIELDS, levels)
        if ctimes.size < times.size or not np.array_equal(ctimes[: times.size], times):
            raise DataError(f"{coarse_dir}: the coarse run's output times do not begin with the run's; run it from the "
                            "same start, at least as long (a longer one is cut to the run's period)")
        coarse = {f: v[: times.size] for f, v in coarse.items()}
        native = (clat, coarse)
        coarse = {f: on_truth_grid(v, clat, clon, tlat, tlon) for f, v in coarse.items()}
        series["coarse model alone"] = diagnostics(times, tlat, coarse, levels, native)
    summary = {
        "period": [str(times[0])[:19], str(times[-1])[:19]], "times": int(times.size), "levels_hPa": list(levels),
        "truth": {"trend_K_per_year": series["truth"]["trend_K_per_year"]},
        "runs": {name: summarise(name, d, series["truth"], tlat, levels) for name, d in series.items() if name != "truth"},
    }
    if "coarse model alone" in summary["runs"]:
        hybrid, coarse_scores = summary["runs"]["hybrid"], summary["runs"]["coarse model alone"]
        summary["zonal_mean_error_ratio_hybrid_to_coarse"] = {
            f: hybrid["zonal_mean_rmse"][f] / coarse_scores["zonal_mean_rmse"][f] for f in hybrid["zonal_mean_rmse"]}
    (out / "climate.json").write_text(json.dumps(summary, indent=1))
    _plots(out, times, tlat, levels, series)
    return summary


# ------------------------------------------------------------------------------------------ figures
_STYLE = {"truth": {"color": "k", "ls": "--"}, "hybrid": {"color": "C0"}, "coarse model alone": {"color": "C1"}}


def _plots(out: Path, times, lat, levels, series: dict) -> list[Path]:
    paths = []
    for field, units in (("temperature", "K"), ("u_component_of_wind", "m s-1")):
        paths.append(zonal_panels(out / f"zonal_mean_{field}.png", lat, levels,
                                  {n: d["zonal_mean"][field] for n, d in series.items()},
                                  f"time- and zonal-mean {field} ({units})", _STYLE))
    for key, label in (("eddy_kinetic_energy", "transient eddy kinetic energy (J kg-1)"),
                       ("temperature_variance", "transient temperature variance (K²)")):
        paths.append(zonal_panels(out / f"{key}.png", lat, levels, {n: d[key].mean(-1) for n, d in series.items()},
                                  f"zonal mean of {label}", _STYLE))
    fig, axes = plt.subplots(len(FIELDS), len(levels), figsize=(3.0 * len(levels), 2.7 * len(FIELDS)),
                             squeeze=False, constrained_layout=True)
    for i, field in enumerate(FIELDS):
        for k, level in enumerate(levels):
            ax = axes[i, k]
            for name, d in series.items():
                spectrum = d["spectra"][field][k]
                ax.loglog(np.arange(1, spectrum.size), spectrum[1:], label=name, **_STYLE.get(name, {}))
            ax.set_title(f"{field.split('_')[0]} {level:g} hPa", fontsize=9)
            ax.set_xlabel("total wavenumber n", fontsize=8)
    axes[0, 0].set_ylabel("power")
    axes[0, 0].legend(fontsize=7)
    fig.savefig(out / "spectra.png", dpi=90)
    plt.close(fig)
    paths.append(out / "spectra.png")
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.0), squeeze=False, constrained_layout=True)
    for k, level in enumerate(levels):
        for name, d in series.items():
            axes[0, k].plot(times, d["global_mean_temperature"][:, k], lw=0.8,
                            label=f"{name} ({d['trend_K_per_year'][k]:+.2f} K/yr)", **_STYLE.get(name, {}))
        axes[0, k].set_title(f"global-mean temperature {level:g} hPa", fontsize=9)
        axes[0, k].legend(fontsize=6)
        axes[0, k].tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.savefig(out / "global_mean_temperature.png", dpi=90)
    plt.close(fig)
    paths.append(out / "global_mean_temperature.png")
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.analysis.climate", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="the hybrid run's --out folder (holds atmorep.zarr)")
    parser.add_argument("--truth", required=True, type=Path, help="the truth store (the run's initial condition)")
    parser.add_argument("--coarse", type=Path, default=None,
                        help="the coarse-model-alone run's --out folder (holds classical.zarr)")
    parser.add_argument("--levels", type=float, nargs="+", default=[250.0, 500.0, 700.0, 850.0])
    parser.add_argument("--out", type=Path, default=None, help="default: RUN/climate")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = compare(args.run, args.truth, args.out or args.run / "climate", coarse_dir=args.coarse,
                      levels=tuple(args.levels))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"} | {
        "runs": {n: {k: v for k, v in r.items() if k != "spectrum_ratio_to_truth"} for n, r in summary["runs"].items()}},
        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
