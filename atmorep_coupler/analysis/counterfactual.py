"""The response to +4 K surface warming: the coupled multiformer's against the dinosaur truth model's.

    python -m atmorep_coupler.analysis.counterfactual --control runs/default --counterfactual runs/counterfactual \\
        --truth STORE [--offset 4.0] [--out DIR]

The multiformer's response is counterfactual minus control of the time-mean, zonal-mean temperature
of the two coupled runs (``atmorep.zarr``; also the coarse classical model's, ``classical_daily.zarr``,
when both runs wrote it). The truth model's response comes from the model that made the truth store,
run again the same way: :func:`truth_response` rebuilds the store's generator (its saved
:class:`~atmorep_coupler.data.default.DefaultDataConfig`, :class:`~atmorep_coupler.data.held_suarez.HeldSuarezModel`
at the store's resolution, same seed and spin-up) and steps it to the coupled runs' start -- the
state the truth store was written from -- then runs the same period twice: on the scenario's ramp
(the control, which reproduces the store) and with ``offset`` K more surface warming (the ramp plus
the offset, set with :meth:`HeldSuarezModel.set_warming` at every output time). Means are over the
coupled runs' output times.

Writes ``response.json`` (per level: area-weighted mean response and the pattern correlation with the
truth model's zonal-mean response) and ``response_<field>.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from atmorep_coupler.config import from_dict  # noqa: E402
from atmorep_coupler.data import forcings  # noqa: E402
from atmorep_coupler.data.default import STATE_FILE, STATE_GROUP, DefaultDataConfig  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.verification.scores import latitude_weights  # noqa: E402

__all__ = ["ZonalMean", "build_parser", "compare", "run_response", "store_config", "truth_response"]

ZonalMean = tuple[np.ndarray, np.ndarray, np.ndarray]  # (latitudes, levels hPa, values [level, lat])


def store_config(store: str | Path) -> DefaultDataConfig:
    """The generator settings a default-dataset store was written with (saved in the store)."""
    file = Path(store) / STATE_GROUP / STATE_FILE
    if not file.exists():
        raise DataError(f"{store}: no {STATE_GROUP}/{STATE_FILE}; the truth must be a store written by "
                        "'python -m atmorep_coupler.data make-default'")
    with np.load(file) as saved:
        settings = json.loads(str(saved["config"]))
    settings.pop("generator_version", None)
    return from_dict(DefaultDataConfig, settings, origin=str(file))


def truth_response(config: DefaultDataConfig, times: np.ndarray, levels_hPa, offset_K: float = 4.0,
                   field: str = "temperature", progress: bool = True) -> tuple[ZonalMean, ZonalMean]:
    """Time-mean zonal means of ``field`` at ``times`` (datetime64, equally spaced; the runs start one
    spacing before the first) of the truth model: ``(control, counterfactual)``; see the module docstring."""
    from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig

    model = HeldSuarezModel(ModelConfig(resolution=config.resolution, sigma_levels=config.sigma_levels,
                                        pressure_levels_hPa=tuple(config.pressure_levels_hPa)), config.scenario)
    seconds = (np.asarray(times, dtype="datetime64[s]") - np.datetime64(config.scenario.epoch, "s")).astype(np.int64)
    index = [model.steps_per(float(s)) for s in seconds]
    if len(index) < 2:
        raise DataError(f"need at least two output times to infer the runs' start, got {len(index)}")
    start = index[0] - (index[1] - index[0])  # the coupled runs start one output interval before the first
    model.initialize(config.seed, step_index=-model.steps_per(config.spinup_days * 86400.0))
    per_day = model.steps_per(86400.0)
    with tqdm(total=start - model.step_index, desc="truth model to the start", unit="step", disable=not progress) as bar:
        while model.step_index < start:
            n = min(per_day, start - model.step_index)
            model.step(n)
            bar.update(n)
    spun_up = model.get_state()
    levels = list(levels_hPa)
    k = [config.pressure_levels_hPa.index(float(level)) for level in levels]
    results = []
    for offset in (None, offset_K):
        model.set_state(spun_up)
        total = 0.0
        for i in tqdm(index, desc="truth model " + ("control" if offset is None else f"+{offset:g} K"),
                      unit="output", disable=not progress):
            if offset is not None:  # the ramp plus the offset, held over the interval that ends at i
                days = (i * model.dt_seconds) / 86400.0
                model.set_warming(float(forcings.warming(days, config.scenario)) + offset)
            model.step(i - model.step_index)
            total = total + model.diagnose("latlon")[field][k].mean(axis=-1)
        model.set_warming(None)
        results.append((model.latitudes, np.asarray(levels, dtype=float), total / len(index)))
    return results[0], results[1]


def run_response(control: Path, counterfactual: Path, store: str, field: str) -> tuple[np.ndarray, ZonalMean]:
    """``(times, (lat, levels, response))`` of a pair of coupled runs' output ``store``."""
    means = []
    for run in (control, counterfactual):
        with xr.open_zarr(Path(run) / store) as ds:
            if field not in ds:
                raise DataError(f"{Path(run) / store}: has no variable {field!r} (it has {sorted(ds.data_vars)})")
            da = ds[field].transpose("time", "level", ...)
            lat = np.asarray(da.lat.values)
            means.append((da.time.values, lat[:, 0] if lat.ndim == 2 else lat, da.level.values,
                          da.values.astype(np.float64).mean(axis=(0, -1))))
    (t0, lat, levels, a), (t1, _, _, b) = means
    if not np.array_equal(t0, t1):
        raise DataError(f"{control} and {counterfactual}: the runs' output times differ; run the same period")
    return t0, (lat, np.asarray(levels, dtype=float), b - a)


def _weighted(values: np.ndarray, lat: np.ndarray) -> float:
    """Area mean of a zonal mean ``values [..., lat]``: rows weighted by band area, once."""
    return float((values * latitude_weights(lat)).mean())


def compare(control: Path, counterfactual: Path, truth_store: Path, out: Path, *, offset_K: float = 4.0,
            field: str = "temperature", progress: bool = True) -> dict:
    """Write ``response.json`` and ``response_<field>.png`` into ``out``; return the JSON content."""
    from atmorep_coupler.regrid import LatLonGrid, Regridder

    out.mkdir(parents=True, exist_ok=True)
    times, (lat, levels, multiformer) = run_response(control, counterfactual, "atmorep.zarr", field)
    truth_control, truth_cf = truth_response(store_config(truth_store), times, levels, offset_K, field, progress)
    truth = truth_cf[2] - truth_control[2]
    if truth_control[0].shape != lat.shape or not np.allclose(truth_control[0], lat):
        # zonal means on other latitudes: conservative in latitude via a one-column lat-lon map
        src = LatLonGrid.from_centers(truth_control[0], np.array([0.0]))
        dst = LatLonGrid.from_centers(lat, np.array([0.0]))
        truth = Regridder(src, dst, "conservative_normed", progress=False).apply(truth[:, :, None])[:, :, 0]
    curves = {"multiformer": multiformer, "truth model (dinosaur)": truth}
    if all((Path(run) / "classical_daily.zarr").exists() for run in (control, counterfactual)):
        _, (clat, _, classical) = run_response(control, counterfactual, "classical_daily.zarr", field)
        curves["classical model (T15)"] = (clat, classical)
    summary = {"field": field, "offset_K": offset_K, "period": [str(times[0])[:19], str(times[-1])[:19]],
               "levels_hPa": levels.tolist(), "mean_response_K": {}, "pattern_correlation_with_truth": []}
    for name, values in curves.items():
        vlat, v = values if isinstance(values, tuple) else (lat, values)
        summary["mean_response_K"][name] = [_weighted(v[i], vlat) for i in range(len(levels))]
    summary["pattern_correlation_with_truth"] = [float(np.corrcoef(multiformer[i], truth[i])[0, 1])
                                                 for i in range(len(levels))]
    (out / "response.json").write_text(json.dumps(summary, indent=1))
    _plot(out / f"response_{field}.png", lat, levels, curves, field, offset_K)
    return summary


def _plot(path: Path, lat, levels, curves, field, offset_K) -> None:
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.4), squeeze=False, sharex=True,
                             constrained_layout=True)
    for i, level in enumerate(levels):
        ax = axes[0, i]
        for name, values in curves.items():
            vlat, v = values if isinstance(values, tuple) else (lat, values)
            ax.plot(vlat, v[i], label=name, ls="--" if "truth" in name else "-")
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_title(f"{level:g} hPa", fontsize=9)
        ax.set_xlabel("latitude (°N)")
    axes[0, 0].set_ylabel(f"Δ zonal-mean {field} (K), +{offset_K:g} K")
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.analysis.counterfactual",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, type=Path, help="--out folder of coupling_configs/default.yaml")
    parser.add_argument("--counterfactual", required=True, type=Path, help="--out folder of counterfactual.yaml")
    parser.add_argument("--truth", required=True, type=Path, help="the truth store (default dataset)")
    parser.add_argument("--offset", type=float, default=4.0, help="surface warming of the counterfactual (K)")
    parser.add_argument("--field", default="temperature")
    parser.add_argument("--out", type=Path, default=None, help="default: COUNTERFACTUAL/response")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = compare(args.control, args.counterfactual, args.truth, args.out or args.counterfactual / "response",
                      offset_K=args.offset, field=args.field, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
