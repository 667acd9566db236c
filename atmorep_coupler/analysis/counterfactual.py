"""The response to +4 K surface warming: the coupled multiformer's against the dinosaur truth model's.

    python -m atmorep_coupler.analysis.counterfactual --control runs/default --counterfactual runs/counterfactual \\
        --truth STORE [--offset 4.0] [--block-days 10] [--out DIR]

The multiformer's response is counterfactual minus control of the zonal-mean temperature of the two
coupled runs (``atmorep.zarr``; also the coarse classical model's, ``classical_daily.zarr``, when both
runs wrote it), averaged over the runs' output times. The truth model's response comes from the model
that made the truth store, run again the same way: :func:`truth_response` rebuilds the store's generator
(its saved :class:`~atmorep_coupler.data.default.DefaultDataConfig`,
:class:`~atmorep_coupler.data.held_suarez.HeldSuarezModel` at the store's resolution, same seed and
spin-up) and steps it to the coupled runs' start -- the state the truth store was written from -- then
runs the same period twice: on the scenario's ramp (the control, which reproduces the store) and with
``offset`` K more surface warming (the ramp plus the offset, set with
:meth:`HeldSuarezModel.set_warming` at every output time).

**Noise.** Weather makes a finite-period response uncertain. Its standard error is estimated by batch
means: the counterfactual-minus-control series is cut into consecutive blocks of ``block_days`` (longer
than the flow's memory, so block means are nearly independent), and SE = std(block means) / sqrt(blocks).
Per level the summary gives each response's area-weighted mean and its SE, the **amplitude ratio**
(multiformer over truth model, of those means), the **pattern correlation** of the zonal-mean responses
over latitude, and the noise level of the truth's zonal-mean response against its spread over latitude
(a pattern correlation means little where the pattern is within the noise). A level counts as
*significant* where the truth model's mean response exceeds twice its SE.

Writes ``response.json`` and ``response_<field>.png`` into ``--out``.
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
from tqdm.auto import tqdm  # noqa: E402

from atmorep_coupler.config import from_dict  # noqa: E402
from atmorep_coupler.data import forcings  # noqa: E402
from atmorep_coupler.data.default import STATE_FILE, STATE_GROUP, DefaultDataConfig  # noqa: E402
from atmorep_coupler.analysis.plots import output_axes  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.verification.scores import latitude_weights  # noqa: E402

__all__ = ["ZonalMean", "block_means", "build_parser", "compare", "response_statistics", "run_response", "run_series",
           "store_config", "truth_response"]

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
    """Zonal means of ``field`` ``[time, level, lat]`` at ``times`` (datetime64, equally spaced; the runs start
    one spacing before the first) of the truth model: ``(control, counterfactual)``; see the module docstring."""
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
        series = []
        for i in tqdm(index, desc="truth model " + ("control" if offset is None else f"+{offset:g} K"),
                      unit="output", disable=not progress):
            if offset is not None:  # the ramp plus the offset, held over the interval that ends at i
                days = (i * model.dt_seconds) / 86400.0
                model.set_warming(float(forcings.warming(days, config.scenario)) + offset)
            model.step(i - model.step_index)
            series.append(model.diagnose("latlon")[field][k].astype(np.float64).mean(axis=-1))
        model.set_warming(None)
        results.append((model.latitudes, np.asarray(levels, dtype=float), np.stack(series)))
    return results[0], results[1]


def run_series(run: Path, store: str, field: str) -> tuple[np.ndarray, ZonalMean]:
    """``(times, (lat, levels, zonal means [time, level, lat]))`` of a coupled run's output ``store``."""
    with xr.open_zarr(Path(run) / store) as ds:
        if field not in ds:
            raise DataError(f"{Path(run) / store}: has no variable {field!r} (it has {sorted(ds.data_vars)})")
        da = ds[field].transpose("time", "level", ...)
        lat, _ = output_axes(da)
        return da.time.values, (lat, da.level.values.astype(float),
                                da.values.astype(np.float64).mean(axis=-1))


def run_response(control: Path, counterfactual: Path, store: str, field: str) -> tuple[np.ndarray, ZonalMean, ZonalMean]:
    """``(times, control, counterfactual)`` zonal-mean series of a pair of coupled runs' output ``store`` over
    the counterfactual's times (the control may be longer: e.g. a year-long run and a 90-day counterfactual
    from the same start)."""
    t0, a = run_series(control, store, field)
    t1, b = run_series(counterfactual, store, field)
    if t1.size > t0.size or not np.array_equal(t0[: t1.size], t1):
        raise DataError(f"{control} and {counterfactual}: the counterfactual's output times are not the first "
                        "ones of the control's; run both from the same start (the control may run longer)")
    return t1, (a[0], a[1], a[2][: t1.size]), b


def block_means(series: np.ndarray, times: np.ndarray, block_days: float) -> np.ndarray:
    """Means of ``series[time, ...]`` over consecutive blocks of ``block_days`` from the runs' start (one output
    spacing before ``times[0]``; an output at a block's end belongs to it; a partial last block is dropped).
    At least two blocks, else :class:`DataError`."""
    seconds = (np.asarray(times, "datetime64[s]") - np.asarray(times, "datetime64[s]")[0]).astype(np.float64)
    spacing = seconds[1] if seconds.size > 1 else 86400.0
    days = (seconds + spacing) / 86400.0  # since the start
    count = int(np.floor(days[-1] / block_days + 1e-9))
    if count < 2:
        raise DataError(f"the runs cover {days[-1]:g} days: the standard error needs at least two blocks of "
                        f"--block-days {block_days:g}; run longer or choose shorter blocks")
    block = np.ceil(days / block_days - 1e-9).astype(int) - 1
    return np.stack([series[block == b].mean(axis=0) for b in range(count)])


def response_statistics(control: np.ndarray, warmed: np.ndarray, lat: np.ndarray, times: np.ndarray,
                        block_days: float) -> dict[str, np.ndarray]:
    """The response (warmed minus control) of zonal means ``[time, level, lat]``: its time mean and SE per
    level and latitude, and its area-weighted mean and SE per level (batch means, module docstring)."""
    difference = np.asarray(warmed, np.float64) - np.asarray(control, np.float64)
    w = latitude_weights(lat)
    blocks = block_means(difference, times, block_days)  # [block, level, lat]
    global_blocks = (blocks * w).sum(-1) / w.sum()
    n = blocks.shape[0]
    return {"zonal": difference.mean(axis=0), "zonal_se": blocks.std(axis=0, ddof=1) / np.sqrt(n),
            "mean": (difference.mean(axis=0) * w).sum(-1) / w.sum(), "mean_se": global_blocks.std(axis=0, ddof=1) / np.sqrt(n),
            "blocks": n}


def _to_latitudes(values: np.ndarray, src_lat: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Zonal means ``[..., lat]`` on other latitudes, conservatively in latitude (a one-column lat-lon map)."""
    if src_lat.shape == lat.shape and np.allclose(src_lat, lat):
        return values
    from atmorep_coupler.regrid import LatLonGrid, Regridder

    src = LatLonGrid.from_centers(src_lat, np.array([0.0]))
    dst = LatLonGrid.from_centers(lat, np.array([0.0]))
    return Regridder(src, dst, "conservative_normed", progress=False).apply(values[..., None])[..., 0]


def compare(control: Path, counterfactual: Path, truth_store: Path, out: Path, *, offset_K: float = 4.0,
            field: str = "temperature", block_days: float = 10.0, progress: bool = True) -> dict:
    """Write ``response.json`` and ``response_<field>.png`` into ``out``; return the JSON content."""
    out.mkdir(parents=True, exist_ok=True)
    times, (lat, levels, a), (_, _, b) = run_response(control, counterfactual, "atmorep.zarr", field)
    truth_control, truth_cf = truth_response(store_config(truth_store), times, levels, offset_K, field, progress)
    truth_series = [_to_latitudes(t[2], truth_control[0], lat) for t in (truth_control, truth_cf)]
    stats = {"multiformer": response_statistics(a, b, lat, times, block_days),
             "truth model (dinosaur)": response_statistics(*truth_series, lat, times, block_days)}
    curves = {"multiformer": (lat, stats["multiformer"]["zonal"]),
              "truth model (dinosaur)": (lat, stats["truth model (dinosaur)"]["zonal"])}
    if all((Path(run) / "classical_daily.zarr").exists() for run in (control, counterfactual)):
        ctimes, (clat, _, ca), (_, _, cb) = run_response(control, counterfactual, "classical_daily.zarr", field)
        stats["classical model (T15)"] = response_statistics(ca, cb, clat, ctimes, block_days)
        curves["classical model (T15)"] = (clat, stats["classical model (T15)"]["zonal"])
    truth, hybrid = stats["truth model (dinosaur)"], stats["multiformer"]
    days = float((times[-1] - times[0]) / np.timedelta64(1, "D")) + float((times[1] - times[0]) / np.timedelta64(1, "D"))
    summary = {
        "field": field, "offset_K": offset_K, "period": [str(times[0])[:19], str(times[-1])[:19]], "days": days,
        "block_days": block_days, "blocks": int(truth["blocks"]), "levels_hPa": levels.tolist(),
        "mean_response_K": {name: st["mean"].tolist() for name, st in stats.items()},
        "mean_response_se_K": {name: st["mean_se"].tolist() for name, st in stats.items()},
        "amplitude_ratio": (hybrid["mean"] / truth["mean"]).tolist(),
        "pattern_correlation_with_truth": [float(np.corrcoef(hybrid["zonal"][i], truth["zonal"][i])[0, 1])
                                           for i in range(len(levels))],
        # noise of the truth's zonal-mean response (mean SE over latitude) against its spread over latitude
        "truth_pattern_spread_K": truth["zonal"].std(axis=-1).tolist(),
        "truth_pattern_noise_K": truth["zonal_se"].mean(axis=-1).tolist(),
        "significant_levels_hPa": [float(p) for p, m, se in zip(levels, truth["mean"], truth["mean_se"])
                                   if abs(m) > 2 * se],
    }
    (out / "response.json").write_text(json.dumps(summary, indent=1))
    _plot(out / f"response_{field}.png", levels, curves, {n: (c[0], stats[n]["zonal_se"]) for n, c in curves.items()},
          field, offset_K)
    return summary


def _plot(path: Path, levels, curves, errors, field, offset_K) -> None:
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.4), squeeze=False, sharex=True,
                             constrained_layout=True)
    for i, level in enumerate(levels):
        ax = axes[0, i]
        for name, (vlat, v) in curves.items():
            line, = ax.plot(vlat, v[i], label=name, ls="--" if "truth" in name else "-")
            se = errors[name][1][i]
            ax.fill_between(vlat, v[i] - 2 * se, v[i] + 2 * se, color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_title(f"{level:g} hPa", fontsize=9)
        ax.set_xlabel("latitude (°N)")
    axes[0, 0].set_ylabel(f"Δ zonal-mean {field} (K), +{offset_K:g} K (±2 SE)")
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
    parser.add_argument("--block-days", type=float, default=10.0,
                        help="block length of the standard error's batch means (default: %(default)s days)")
    parser.add_argument("--out", type=Path, default=None, help="default: COUNTERFACTUAL/response")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = compare(args.control, args.counterfactual, args.truth, args.out or args.counterfactual / "response",
                      offset_K=args.offset, field=args.field, block_days=args.block_days,
                      progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
