"""The quickstart report: ``report.md`` with PNG figures, from the outputs of the chain's stages.

    python -m atmorep_coupler.analysis.report --out DIR [--run RUN_DIR] [--forecast forecast.json] \\
        [--scorecard scorecard.json] [--coupled COUPLED_RUN --truth STORE] [--climate CLIMATE_DIR] \\
        [--response RESPONSE_DIR] [--timings timings.json]

Every input is optional; the report has a section for each one given:

- ``--run``: a training run folder (``logs/train.csv`` and ``logs/validation.csv`` of
  ``training/loop.py``'s ``MetricsLogger`` under a Ray Train run, or the ``--out`` folder of a
  single-process ``python -m atmorep_coupler.train``): loss curves and the last validation scores;
- ``--forecast``: the JSON of ``python -m atmorep_coupler.training.evaluate``: RMSE by lead time of the
  model, persistence and climatology, and the ensemble's spread, spread/skill and CRPS;
- ``--scorecard``: the ``scorecard.json`` of ``python -m atmorep_coupler.verify``: RMSE and ACC by lead of the
  coupled multiformer and every baseline over many start dates, which of them it beats where, and the
  RMSE/ACC plots;
- ``--coupled`` with ``--truth``: a coupled run's ``--out`` folder and the truth store: the maps, global
  mean and zonal means of ``analysis.plots.plot_run``, and the run's error against the truth (skill by
  lead comes from the scorecard's many start dates, not from this one run);
- ``--climate``: the folder ``analysis.climate`` wrote (``climate.json`` and figures): the run's climate
  against the truth's and the coarse model alone's;
- ``--response``: the folder ``analysis.counterfactual`` wrote (``response.json``, ``response_*.png``);
- ``--timings``: the quickstart's ``timings.json`` (wall time per stage).

All figures are written into ``--out`` next to ``report.md`` and linked relatively, so the folder can be
moved or shared as it is. Numbers in the tables are the inputs' numbers rounded to 4 significant digits.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atmorep_coupler.analysis.plots import global_mean, plot_run, run_and_truth  # noqa: E402
from atmorep_coupler.data import open_store  # noqa: E402
from atmorep_coupler.errors import DataError  # noqa: E402
from atmorep_coupler.verification.plots import plot_scorecard  # noqa: E402
from atmorep_coupler.verification.scorecard import Scorecard, format_lead  # noqa: E402

__all__ = ["build_parser", "fields_of", "fmt", "main", "read_log", "write_report"]

REPORT = "report.md"


def fmt(value: float) -> str:
    """The one number format of the report (4 significant digits)."""
    return f"{value:.4g}"


def read_log(path: Path) -> dict[str, np.ndarray]:
    """Columns of a ``MetricsLogger`` CSV file as float arrays (NaN where a row has no value)."""
    if not path.exists():
        raise DataError(f"{path}: not found; is the folder a training run (with logs/train.csv or train.csv)?")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(f"{path}: no rows; the run logged nothing yet")
    return {key: np.array([float(row[key]) if row.get(key) not in (None, "") else np.nan for row in rows])
            for key in rows[0]}


def fields_of(keys: Iterable[str]) -> list[str]:
    """Field names of ``"<field>/rmse"`` keys (of scores or CSV columns), in order of appearance."""
    return list(dict.fromkeys(key.split("/")[0] for key in keys if key.count("/") == 1 and key.endswith("/rmse")))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _figure(lines: list[str], path: Path, alt: str, caption: str) -> None:
    lines += [f"![{alt}]({path.name})", "", f"*{caption}*", ""]


def _panels(count: int, width: float = 4.0, height: float = 3.0):
    cols = min(count, 2)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------- training
def training_section(run_dir: Path, out: Path) -> list[str]:
    logs = Path(run_dir) / "logs"  # a Ray Train run folder; a single-process run's --out holds the CSVs itself
    logs = logs if logs.is_dir() else Path(run_dir)
    train = read_log(logs / "train.csv")
    validation = read_log(logs / "validation.csv") if (logs / "validation.csv").exists() else None
    fields = fields_of(validation) if validation else []
    fig, axes = plt.subplots(1, 2 if fields else 1, figsize=(11 if fields else 6, 3.6), squeeze=False,
                             constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(train["step"], train["loss"], label="training (logged steps)")
    if validation:
        ax.plot(validation["step"], validation["loss"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    if fields:
        for name in fields:
            axes[0, 1].plot(validation["step"], validation[f"{name}/rmse"], "o-", label=name)
        axes[0, 1].set_xlabel("step")
        axes[0, 1].set_ylabel("validation RMSE (normalized units)")
        axes[0, 1].legend(fontsize=8)
    path = _save(fig, out / "training_curves.png")
    lines = ["## Training", "",
             f"Run folder `{run_dir}`: {int(train['step'][-1])} steps; loss logged at {len(train['step'])} steps, "
             f"validation at {len(validation['step']) if validation else 0}.", ""]
    caption = ("Left: the training loss (the configured losses' weighted mean, on the logged steps) and the loss "
               "on the fixed validation batches; both falling means the network learns and does not overfit yet.")
    if fields:
        caption += (" Right: the validation RMSE of each predicted field on its masked tokens, in normalized units "
                    "(1 = the field's monthly standard deviation at that grid point).")
    _figure(lines, path, "training and validation loss", caption)
    if validation:
        rows = [["loss", fmt(train["loss"][-1]), fmt(validation["loss"][-1])],
                *[[f"{name} RMSE (normalized)", "", fmt(validation[f"{name}/rmse"][-1])] for name in fields]]
        lines += _table(["at the last step", "training", "validation"], rows)
    return lines


# ---------------------------------------------------------------------------------------- forecast skill
def _by_lead(forecast: Mapping, kind: str, key: str) -> np.ndarray:
    return np.array([lead[kind].get(key, np.nan) for lead in forecast["leads"]])


def skill_section(forecast: Mapping, out: Path) -> list[str]:
    leads = forecast["leads"]
    hours = np.array([lead["lead_hours"] for lead in leads])
    fields = fields_of(leads[0]["model"])
    units = forecast.get("units", {})
    M = forecast["ensemble_size"]

    fig, axes = _panels(len(fields))
    for ax, name in zip(axes, fields):
        for kind, style in (("model", "o-"), ("persistence", "s--"), ("climatology", "^:")):
            ax.plot(hours, _by_lead(forecast, kind, f"{name}/rmse"), style, label=kind)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("lead time (h)")
        ax.set_ylabel(f"RMSE ({units.get(name, 'store units')})", fontsize=8)
    axes[0].legend(fontsize=8)
    skill = _save(fig, out / "skill_by_lead.png")

    fig, axes = _panels(len(fields))
    for ax, name in zip(axes, fields):
        ax.plot(hours, _by_lead(forecast, "model", f"{name}/rmse"), "o-", label="RMSE of the ensemble mean")
        ax.plot(hours, _by_lead(forecast, "model", f"{name}/spread_corrected"), "s--",
                label=f"spread × √((M+1)/M), M = {M}")
        ax.set_ylim(bottom=0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("lead time (h)")
        ax.set_ylabel(units.get(name, "store units"), fontsize=8)
    axes[0].legend(fontsize=8)
    spread = _save(fig, out / "spread_skill.png")

    lines = ["## Forecast skill by lead time", "",
             f"{forecast['batches']} held-out batches of {forecast['batch_size']} neighbourhoods from the "
             f"validation period; at each lead the last *s* token time slices are hidden and predicted at once "
             f"from the rest, and the last hidden slice is scored (area-weighted RMSE in store units, all "
             f"levels pooled). Persistence repeats the last visible time step. Climatology is the store's "
             f"monthly mean per grid point (interpolated between mid-month values), computed over the whole store, so "
             f"it is in-sample (slightly optimistic). Input-only fields stay visible at the hidden times, as in a coupled run; in "
             f"training data the coarse-model fields are the truth coarsened, so this is the skill given a "
             f"perfect coarse model. The scorecard below, with a real coarse model and many start dates, is the "
             f"realistic case.", ""]
    rows = [[name, fmt(lead["lead_hours"]), fmt(lead["model"][f"{name}/rmse"]), fmt(lead["persistence"][f"{name}/rmse"]),
             fmt(lead["climatology"][f"{name}/rmse"]), fmt(lead["ratio"][f"{name}/rmse"]),
             fmt(lead["ratio_climatology"][f"{name}/rmse"]), units.get(name, "")]
            for name in fields for lead in leads]
    lines += _table(["field", "lead (h)", "model RMSE", "persistence RMSE", "climatology RMSE",
                     "model / persistence", "model / climatology", "units"], rows)
    lines += [_verdict(leads, fields), ""]
    _figure(lines, skill, "RMSE by lead time",
            "RMSE against lead time per field: the model (circles) is useful where it lies below both "
            "persistence (squares) and climatology (triangles); persistence grows with lead, climatology does not.")
    lines += ["## Ensemble spread and skill", "",
              f"The {M}-member ensemble of the tail: the RMSE of its mean against its spread (square root of the "
              f"mean unbiased member variance, times √((M+1)/M) for the finite ensemble), their ratio "
              f"(1 = calibrated, below 1 = over-confident) and the fair ensemble CRPS (store units; lower is better).", ""]
    rows = [[name, fmt(lead["lead_hours"]), fmt(lead["model"][f"{name}/rmse"]),
             fmt(lead["model"][f"{name}/spread_corrected"]), fmt(lead["model"][f"{name}/spread_skill"]),
             fmt(lead["model"][f"{name}/crps"])] for name in fields for lead in leads]
    lines += _table(["field", "lead (h)", "RMSE", "spread (corrected)", "spread / RMSE", "CRPS"], rows)
    _figure(lines, spread, "ensemble spread against RMSE by lead time",
            "Per field, the ensemble mean's RMSE (circles) and the corrected ensemble spread (squares) by lead: "
            "for a calibrated ensemble the two curves coincide; spread below RMSE means over-confident members.")
    return lines


def _verdict(leads: Sequence[Mapping], fields: Sequence[str]) -> str:
    """One honest sentence: where the model beats which baseline."""
    pairs = [(name, lead) for lead in leads for name in fields]
    beats_p = sum(lead["ratio"][f"{name}/rmse"] < 1 for name, lead in pairs)
    beats_c = sum(lead["ratio_climatology"][f"{name}/rmse"] < 1 for name, lead in pairs)
    return (f"The model's RMSE is below persistence in {beats_p} and below climatology in {beats_c} of the "
            f"{len(pairs)} field/lead pairs.")


# ---------------------------------------------------------------------------------------- scorecard
MODEL = "multiformer_coupled"


def scorecard_section(path: Path, out: Path) -> list[str]:
    card = Scorecard.load(path)
    info = card.info
    starts = card.starts
    lines = ["## Scorecard: the coupled multiformer against every baseline", "",
             f"`python -m atmorep_coupler.verify` on {len(starts)} start dates from {starts[0][:16]} to "
             f"{starts[-1][:16]}, forecasts to {format_lead(card.leads_hours[-1])} in steps of "
             f"{format_lead(card.leads_hours[0])}, made by the multiformer component's global step "
             f"({info.get('tiling', {}).get('tiles', '?')} tiles) with all start dates batched; wall time "
             f"{fmt(info.get('wall_time_s', {}).get('total', float('nan')))} s. Scores on whole global fields with "
             "WeatherBench 2's definitions (latitude weights once; RMSE after the mean over start dates; ACC against "
             "the out-of-sample climatology). The systems, on the same start dates and grid:", ""]
    lines += [f"- `{key}`: {system.label}" for key, system in card.systems.items()]
    lines += ["", *[f"Note: {note}." for note in card.notes], ""]
    verdicts = card.verdict(MODEL, [b for b in ("persistence", "climatology", "coarse_model") if b in card.systems])
    if MODEL in card.systems:
        lines += ["Where the coupled multiformer's RMSE is lower than each baseline's, at the reported leads:", ""]
        rows = [[base, ", ".join(v["all"]) or "none", ", ".join(v["some"]) or "none", ", ".join(v["none"]) or "none"]
                for base, v in verdicts.items()]
        lines += _table(["baseline", "better for every field and level", "for some", "for none"], rows)
    for metric, what in (("rmse", "RMSE (store units; lower is better)"), ("acc", "ACC (higher is better; n/a: "
                                                                                  "undefined for the climatology itself)")):
        lines += [f"### {what}", "", *card.table(metric), ""]
    for figure in plot_scorecard(card, out):
        name = figure.stem.removeprefix("scorecard_")
        _figure(lines, figure, f"scorecard {name}",
                f"{name}: RMSE (left) and ACC (right) against lead, one line per forecast system, a row per level. "
                "Below persistence and climatology means skill; the gap to the coarse model alone is what the "
                "multiformer adds to it; the dotted blue line is the upper bound with perfect conditioning.")
    return lines


# ---------------------------------------------------------------------------------------- coupled run
def coupled_section(run_dir: Path, truth_store: Path, out: Path, *, field: str = "temperature",
                    level: float = 500.0) -> list[str]:
    maps, series, zonal = plot_run(run_dir, truth_store, out, field=field, level=level)
    truth = open_store(truth_store)
    times, lat, _, run, reference = run_and_truth(Path(run_dir), truth, field, level)
    error = run[:, 0] - reference[:, 0]
    rmse = np.sqrt(global_mean(error**2, lat))
    bias = global_mean(error, lat)
    units = truth.units(field)
    picks = np.unique(np.linspace(0, len(times) - 1, 3).round().astype(int))
    lines = ["## Coupled run against the truth run", "",
             f"The coupled run `{run_dir}` (multiformer + coarse classical model + forcings, "
             f"{str(times[0])[:16]} to {str(times[-1])[:16]}, {len(times)} outputs) against the truth store it "
             f"started from. Area-weighted error of {field} at {level:g} hPa (one start date: for skill by lead see "
             "the scorecard):", ""]
    lines += _table(["time", f"RMSE ({units})", f"bias ({units})"],
                    [[str(times[i])[:16], fmt(rmse[i]), fmt(bias[i])] for i in picks])
    _figure(lines, maps, f"maps of {field} {level:g} hPa",
            f"{field} at {level:g} hPa, coupled run (top) and truth run (bottom) at the first, middle and last "
            "output times on one colour scale: the coupled run should keep the truth's jets and waves, and drifts "
            "away from the truth's weather as the lead grows.")
    _figure(lines, series, f"global mean {field} {level:g} hPa",
            f"Area-weighted global mean of {field} at {level:g} hPa: a steady offset is a bias, a trend a drift "
            "of the coupled climate.")
    _figure(lines, zonal, f"zonal mean {field}",
            f"Time- and zonal-mean {field} per level against latitude: the coupled run's climate (solid) against "
            "the truth's (dashed).")
    return lines


# ---------------------------------------------------------------------------------------- response
def _analysis_json(folder: Path, name: str, producer: str) -> dict:
    """The JSON an analysis command wrote into its ``--out`` folder; DataError naming the command if absent."""
    file = Path(folder) / name
    if not file.exists():
        raise DataError(f"{file}: not found; is {folder} the --out folder of {producer}?")
    return json.loads(file.read_text())


def response_section(response_dir: Path, out: Path) -> list[str]:
    summary = _analysis_json(response_dir, "response.json", "analysis.counterfactual")
    field = summary["field"]
    figure = Path(response_dir) / f"response_{field}.png"
    curves = list(summary["mean_response_K"])
    errors = summary.get("mean_response_se_K", {})

    def cell(curve: str, i: int) -> str:
        value = fmt(summary["mean_response_K"][curve][i])
        return f"{value} ± {fmt(errors[curve][i])}" if curve in errors else value

    rows = [[fmt(level), *(cell(c, i) for c in curves), fmt(summary["pattern_correlation_with_truth"][i]),
             *([fmt(summary["amplitude_ratio"][i]), fmt(summary["truth_pattern_noise_K"][i]) + " / "
                + fmt(summary["truth_pattern_spread_K"][i])] if "amplitude_ratio" in summary else [])]
            for i, level in enumerate(summary["levels_hPa"])]
    lines = ["## Counterfactual response", "",
             f"Counterfactual minus control of the time- and zonal-mean {field} under +{summary['offset_K']:g} K "
             f"surface warming, {summary['period'][0]} to {summary['period'][1]}; the truth model is the dinosaur "
             "model that made the store, run again with the same extra warming. Area-weighted mean response (K) "
             "± its standard error (batch means over "
             f"{summary.get('blocks', '?')} blocks of {summary.get('block_days', '?')} days), the pattern "
             "correlation of the multiformer's zonal-mean response with the truth model's over latitude, the "
             "amplitude ratio (multiformer over truth model), and the truth pattern's noise (mean SE over latitude) "
             "against its spread over latitude (a pattern correlation means little where they are alike). "
             f"Levels where the truth's response exceeds twice its SE: {summary.get('significant_levels_hPa', '?')} hPa.",
             ""]
    extra = ["amplitude ratio", "truth pattern noise / spread (K)"] if "amplitude_ratio" in summary else []
    lines += _table(["level (hPa)", *curves, "pattern correlation", *extra], rows)
    if figure.exists():
        _figure(lines, Path(shutil.copy2(figure, out / figure.name)), "counterfactual response",
                "Response of the zonal-mean temperature per level: the multiformer (solid) should follow the truth "
                "model (dashed) in sign and latitude; a flat line means the network ignores the warming it is given.")
    return lines


# ---------------------------------------------------------------------------------------- climate
def climate_section(climate_dir: Path, out: Path) -> list[str]:
    """The climate of a coupled run against the truth's (``analysis.climate``'s ``climate.json`` and figures)."""
    summary = _analysis_json(climate_dir, "climate.json", "analysis.climate")
    runs = summary["runs"]
    levels = summary["levels_hPa"]
    lines = ["## Climate against the truth", "",
             f"{summary['times']} outputs from {summary['period'][0]} to {summary['period'][1]}, on the truth's grid "
             "(`python -m atmorep_coupler.analysis.climate`). Zonal-mean error: area-weighted RMS over latitude and "
             "level of the time- and zonal-mean field minus the truth's. Eddies: area means of transient eddy kinetic "
             "energy and temperature variance, run over truth. Spectra: power by total wavenumber on each run's own "
             "grid, worst factor from the truth's over n and level (1 = equal). Trend: global-mean temperature, "
             "run minus truth.", ""]
    rows = []
    for name, r in runs.items():
        rows.append([name, fmt(r["zonal_mean_rmse"]["temperature"]), fmt(r["zonal_mean_rmse"]["u_component_of_wind"]),
                     " / ".join(fmt(x) for x in r["eddy_ratio_to_truth"]["eddy_kinetic_energy"]),
                     " / ".join(fmt(x) for x in r["eddy_ratio_to_truth"]["temperature_variance"]),
                     " / ".join(fmt(r["spectrum_worst_factor"][f]) for f in ("temperature", "u_component_of_wind")),
                     " / ".join(fmt(x) for x in r["trend_minus_truth_K_per_year"])])
    lines += _table(["run", "zonal-mean T RMSE (K)", "zonal-mean u RMSE (m/s)",
                     f"EKE ratio ({'/'.join(f'{p:g}' for p in levels)} hPa)", "T variance ratio",
                     "spectrum worst factor (T / u)", "trend minus truth (K/yr, by level)"], rows)
    if "zonal_mean_error_ratio_hybrid_to_coarse" in summary:
        ratio = summary["zonal_mean_error_ratio_hybrid_to_coarse"]
        lines += [f"Zonal-mean error of the hybrid over the coarse model alone's: temperature "
                  f"{fmt(ratio['temperature'])}, zonal wind {fmt(ratio['u_component_of_wind'])}.", ""]
    captions = {
        "zonal_mean_temperature.png": "Time- and zonal-mean temperature per level: hybrid and coarse model alone "
                                      "against the truth (dashed).",
        "zonal_mean_u_component_of_wind.png": "Time- and zonal-mean zonal wind per level: the jets.",
        "eddy_kinetic_energy.png": "Transient eddy kinetic energy, zonal mean per level: the storm tracks.",
        "temperature_variance.png": "Transient temperature variance, zonal mean per level.",
        "spectra.png": "Power by total wavenumber of single fields, time-averaged: excess power at large n is "
                       "speckle or blockiness, a deficit is lost eddies.",
        "global_mean_temperature.png": "Global-mean temperature per level with least-squares trends: drift shows "
                                       "as a trend that departs from the truth's.",
    }
    for name, caption in captions.items():
        figure = Path(climate_dir) / name
        if figure.exists():
            _figure(lines, Path(shutil.copy2(figure, out / f"climate_{name}")), name.removesuffix(".png"), caption)
    return lines


# ---------------------------------------------------------------------------------------- report
def _header(sources: Mapping[str, Path | None], timings: Mapping | None) -> list[str]:
    lines = ["# atmorep_coupler report", "",
             f"Written {dt.datetime.now().isoformat(timespec='seconds')} by `python -m atmorep_coupler.analysis.report`.",
             ""]
    if sources.get("truth"):
        store = open_store(sources["truth"])
        lines += [f"Data: `{sources['truth']}` ({store.latitudes.size}x{store.longitudes.size} grid, "
                  f"{store.times.size} times from {str(store.times[0])[:16]} to {str(store.times[-1])[:16]}).", ""]
    if timings:
        mode = timings.get("mode")
        lines += [f"Quickstart mode: {mode}" + (" (a smoke run of the chain: tiny data, network and runs; "
                                               "nothing here is skilful)" if mode == "tiny" else "")
                  + f"; {timings.get('steps')} training steps on {timings.get('workers')} Ray Train workers.", ""]
        rows = [[stage, fmt(seconds)] for stage, seconds in timings["stages_s"].items()]
        lines += _table(["stage", "wall time (s)"], [*rows, ["total before the report", fmt(timings["total_s"])]])
    return lines


def write_report(out: Path, *, run: Path | None = None, forecast: Path | None = None, scorecard: Path | None = None,
                 coupled: Path | None = None, truth: Path | None = None, response: Path | None = None,
                 climate: Path | None = None,
                 timings: Path | None = None) -> Path:
    """Write ``report.md`` and its figures into ``out`` from the given inputs; return the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = _header({"truth": truth}, json.loads(Path(timings).read_text()) if timings else None)
    if run:
        lines += training_section(Path(run), out)
    if forecast:
        lines += skill_section(json.loads(Path(forecast).read_text()), out)
    if scorecard:
        lines += scorecard_section(Path(scorecard), out)
    if coupled:
        lines += coupled_section(Path(coupled), Path(truth), out)
    if climate:
        lines += climate_section(Path(climate), out)
    if response:
        lines += response_section(Path(response), out)
    inputs = {"training run": run, "forecast evaluation": forecast, "scorecard": scorecard, "coupled run": coupled,
              "truth store": truth, "climate diagnostics": climate, "counterfactual response": response,
              "stage timings": timings}
    lines += ["## Inputs", "", *(f"- {what}: `{Path(path).resolve()}`" for what, path in inputs.items() if path), ""]
    path = out / REPORT
    path.write_text("\n".join(lines))
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.analysis.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md and its PNG figures")
    parser.add_argument("--run", type=Path, help="training run folder (holds logs/train.csv)")
    parser.add_argument("--forecast", type=Path, help="JSON of python -m atmorep_coupler.training.evaluate")
    parser.add_argument("--scorecard", type=Path, help="scorecard.json of python -m atmorep_coupler.verify")
    parser.add_argument("--coupled", type=Path, help="a coupled run's --out folder (holds atmorep.zarr); needs --truth")
    parser.add_argument("--truth", type=Path, help="the truth store the coupled run started from")
    parser.add_argument("--response", type=Path, help="--out folder of python -m atmorep_coupler.analysis.counterfactual")
    parser.add_argument("--climate", type=Path, help="--out folder of python -m atmorep_coupler.analysis.climate")
    parser.add_argument("--timings", type=Path, help="the quickstart's timings.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.coupled and not args.truth:
        parser.error("--coupled needs --truth (the store the coupled run started from)")
    if not any((args.run, args.forecast, args.scorecard, args.coupled, args.response, args.climate)):
        parser.error("give at least one of --run, --forecast, --scorecard, --coupled, --response, --climate")
    path = write_report(args.out, run=args.run, forecast=args.forecast, scorecard=args.scorecard, coupled=args.coupled,
                        truth=args.truth, response=args.response, climate=args.climate, timings=args.timings)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
