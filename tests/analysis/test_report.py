"""The report: every linked figure exists beside report.md, and every number in its tables is the
number of its input (training CSV logs, evaluation JSON, response JSON, an independent RMSE of the
coupled run against the truth store). The slow test runs ``quickstart --tiny`` end to end."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from atmorep_coupler.analysis.report import build_parser, fmt, write_report
from atmorep_coupler.data import open_store
from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import load_run_config
from atmorep_coupler.training.evaluate import evaluate_forecast
from atmorep_coupler.training.trainer import Trainer
from atmorep_coupler.verification.scorecard import Scorecard, format_lead

QUICKSTART_TIMEOUT_S = 900


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables keyed by their first header cell, as lists of ``{header: cell}`` rows."""
    found: dict[str, list[dict[str, str]]] = {}
    for block in re.findall(r"((?:^\|.*\|\n)+)", markdown, re.M):
        lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()]
        header, rows = lines[0], lines[2:]
        assert set("".join(lines[1])) <= {"-"}, block
        found.setdefault(header[0], []).extend(dict(zip(header, row, strict=True)) for row in rows)
    return found


def check_figures(report: Path) -> list[str]:
    """Every image link is a relative file name that exists next to report.md, and every PNG is linked."""
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert links, "report without figures"
    for link in links:
        assert "/" not in link and link.endswith(".png"), link
        assert (report.parent / link).stat().st_size > 5_000, link
    assert sorted(links) == sorted(p.name for p in report.parent.glob("*.png"))
    return links


def same(cell: str, value: float) -> bool:
    """The cell shows ``value`` to the report's 4 significant digits."""
    return cell == fmt(value) and float(cell) == pytest.approx(value, rel=1e-3, abs=1e-12)


def check_forecast_tables(found: dict, forecast: dict) -> None:
    leads = {fmt(lead["lead_hours"]): lead for lead in forecast["leads"]}
    fields = sorted({k.split("/")[0] for k in forecast["model"]})
    skill = [row for row in found["field"] if "persistence RMSE" in row]
    ensemble = [row for row in found["field"] if "CRPS" in row]
    assert len(skill) == len(ensemble) == len(fields) * len(leads)
    for row in skill:
        lead, key = leads[row["lead (h)"]], f"{row['field']}/rmse"
        for column, value in (("model RMSE", lead["model"][key]), ("persistence RMSE", lead["persistence"][key]),
                              ("climatology RMSE", lead["climatology"][key]), ("model / persistence", lead["ratio"][key]),
                              ("model / climatology", lead["ratio_climatology"][key])):
            assert same(row[column], value), (row, column, value)
        assert row["units"] == forecast["units"][row["field"]]
    for row in ensemble:
        model = leads[row["lead (h)"]]["model"]
        for column, stat in (("RMSE", "rmse"), ("spread (corrected)", "spread_corrected"),
                             ("spread / RMSE", "spread_skill"), ("CRPS", "crps")):
            assert same(row[column], model[f"{row['field']}/{stat}"]), (row, column)


def last_row(path: Path) -> dict[str, float]:
    with path.open() as handle:
        return {k: float(v) for k, v in list(csv.DictReader(handle))[-1].items() if v}


def check_training_table(found: dict, logs: Path) -> None:
    train, validation = last_row(logs / "train.csv"), last_row(logs / "validation.csv")
    rows = {row["at the last step"]: row for row in found["at the last step"]}
    assert same(rows["loss"]["training"], train["loss"]) and same(rows["loss"]["validation"], validation["loss"])
    for name in ("temperature", "u_component_of_wind"):
        assert same(rows[f"{name} RMSE (normalized)"]["validation"], validation[f"{name}/rmse"])


@pytest.fixture(scope="module")
def trained(tiny_store, tmp_path_factory):
    """The packaged tiny config trained 6 steps in this process (CSV logs; validation at steps 3 and 6)
    and scored at two leads."""
    out = tmp_path_factory.mktemp("report_inputs")
    torch.set_num_threads(1)
    config = load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store))
    config = dataclasses.replace(config, validation=dataclasses.replace(config.validation, every_steps=3))
    trainer = Trainer(config, log_dir=out / "run")
    trainer.fit(6, progress=False)
    forecast = evaluate_forecast(trainer.raw_model, trainer.validation_sampler, slices=[1, 2], batches=1,
                                 progress=False)
    (out / "forecast.json").write_text(json.dumps(forecast))
    return out


def test_report_numbers_and_figures_are_those_of_the_inputs(trained, tmp_path):
    report = write_report(tmp_path / "report", run=trained / "run", forecast=trained / "forecast.json")
    assert report == tmp_path / "report" / "report.md"
    assert check_figures(report) == ["training_curves.png", "skill_by_lead.png", "spread_skill.png"]
    found = tables(report.read_text())
    check_training_table(found, trained / "run")
    check_forecast_tables(found, json.loads((trained / "forecast.json").read_text()))
    assert "in-sample" in report.read_text()


def check_scorecard_tables(found: dict, card: Scorecard) -> None:
    """Every cell of the report's RMSE and ACC tables is the scorecard's number at that lead."""
    for metric in ("rmse", "acc"):
        rows = found[f"field ({metric.upper()})"]
        assert rows
        for row in rows:
            for lead in card.reported_leads():
                value = card.value(row["system"], row[f"field ({metric.upper()})"], row["level"], metric, lead)
                cell = row[format_lead(lead)]
                assert cell == "n/a" if np.isnan(value) else same(cell, value), (row, lead)
    systems = {row["system"] for row in found["field (RMSE)"]}
    assert systems == set(card.systems)


def test_scorecard_section_shows_the_scorecard_numbers(tmp_path):
    lat = 90.0 - (np.arange(8) + 0.5) * 22.5
    rng = np.random.default_rng(0)
    card = Scorecard({"t": ["500hPa"]}, {"t": "K"}, [3.0, 6.0, 9.0, 12.0], lat, ["2000-05-01T00:00:00"])
    card.info["wall_time_s"] = {"total": 12.5}
    truth = rng.normal(size=(2, 4, 1, 8, 16))
    for key, scale in (("multiformer_coupled", 0.5), ("persistence", 1.0), ("coarse_model", 0.4), ("climatology", 2.0)):
        card.add_system(key, key.replace("_", " "))
        for lead in range(4):
            forecast = np.zeros_like(truth[:, lead]) if key == "climatology" else truth[:, lead] + scale * (lead + 1) * 0.3
            card.add(key, "t", lead, forecast, truth[:, lead], np.zeros_like(truth[:, lead]))
    path = card.save(tmp_path / "scorecard.json")
    report = write_report(tmp_path / "report", scorecard=path)
    assert check_figures(report) == ["scorecard_t.png"]
    found = tables(report.read_text())
    check_scorecard_tables(found, Scorecard.load(path))
    verdict = {row["baseline"]: row for row in found["baseline"]}
    assert verdict["persistence"]["better for every field and level"] == "3 h, 6 h, 12 h"
    assert verdict["coarse_model"]["for none"] == "3 h, 6 h, 12 h"
    assert "wall time 12.5 s" in report.read_text()


def test_report_cli_needs_an_input_and_truth_for_a_coupled_run(tmp_path, capsys):
    from atmorep_coupler.analysis.report import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert "give at least one of --run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--coupled", str(tmp_path)])
    assert "--coupled needs --truth" in capsys.readouterr().err
    args = build_parser().parse_args(["--out", "r", "--forecast", "f.json", "--run", "runs/x"])
    assert args.forecast == Path("f.json") and args.run == Path("runs/x")


@pytest.mark.slow
def test_quickstart_tiny_writes_a_report_of_its_own_numbers(tmp_path):
    out = tmp_path / "quickstart"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "atmorep_coupler.quickstart", "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=QUICKSTART_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    seconds = time.perf_counter() - start
    report = out / "report" / "report.md"
    assert f"REPORT             {report}" in result.stdout
    check_figures(report)
    found = tables(report.read_text())
    check_training_table(found, out / "runs" / "quickstart" / "logs")
    check_forecast_tables(found, json.loads((out / "forecast.json").read_text()))

    response = json.loads((out / "response" / "response.json").read_text())
    rows = found["level (hPa)"]
    assert [float(row["level (hPa)"]) for row in rows] == response["levels_hPa"]
    for i, row in enumerate(rows):
        assert same(row["pattern correlation"], response["pattern_correlation_with_truth"][i])
        assert same(row["amplitude ratio"], response["amplitude_ratio"][i])
        for curve, values in response["mean_response_K"].items():
            mean, se = row[curve].split(" ± ")
            assert same(mean, values[i]) and same(se, response["mean_response_se_K"][curve][i])

    climate = json.loads((out / "climate" / "climate.json").read_text())
    rows = {row["run"]: row for row in found["run"]}
    assert set(rows) == {"hybrid", "coarse model alone"} == set(climate["runs"])
    for name, row in rows.items():
        scores = climate["runs"][name]
        assert same(row["zonal-mean T RMSE (K)"], scores["zonal_mean_rmse"]["temperature"])
        assert same(row["zonal-mean u RMSE (m/s)"], scores["zonal_mean_rmse"]["u_component_of_wind"])
        ratios = row["EKE ratio (250/500/700/850 hPa)"].split(" / ")
        assert all(same(c, v) for c, v in zip(ratios, scores["eddy_ratio_to_truth"]["eddy_kinetic_energy"], strict=True))

    # the coupled run's error against the truth store, computed here with numpy
    store = open_store(re.search(r"^  dataset\s+(\S+)$", result.stdout, re.M).group(1))
    assert f"`{store.path}`" in report.read_text()
    with xr.open_zarr(out / "coupled" / "default" / "atmorep.zarr") as ds:
        run = ds.temperature.sel(level=500.0).transpose("time", ...).values.astype(np.float64)
        times = ds.time.values
    truth = store.read("temperature", time=[store.time_index(t) for t in times], levels=[500.0])[:, 0]
    w = np.cos(np.deg2rad(store.latitudes))[:, None] * np.ones(store.longitudes.size)
    rmse = np.sqrt((w * (run - truth) ** 2).sum(axis=(1, 2)) / w.sum())
    first = found["time"][0]
    assert first["time"] == str(times[0])[:16] and same(first["RMSE (K)"], rmse[0])
    check_scorecard_tables(found, Scorecard.load(out / "verification" / "scorecard.json"))

    # the second training stage's checkpoint is what the later stages ran
    rollout_run = out / "runs" / "quickstart_rollout"
    assert Path(Scorecard.load(out / "verification" / "scorecard.json").info["checkpoint"]).is_relative_to(rollout_run)
    assert f"final checkpoint   {rollout_run}" in result.stdout

    timings = {row["stage"]: row["wall time (s)"] for row in found["stage"]}
    assert len(timings) == 12 and float(timings["total before the report"]) < seconds  # 11 stages and the total
    print(f"quickstart --tiny: {seconds:.0f} s")
