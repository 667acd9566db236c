"""Forecast evaluation by lead time against independent computations from raw store reads: persistence,
the monthly-mean climatology, and the ensemble's RMSE, spread and CRPS (scoringrules) of the model's
own members, de-normalized here with numpy from the stored statistics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from atmorep_coupler.data.normalization import month_index
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import StrategyConfig
from atmorep_coupler.model.masking import Masker
from atmorep_coupler.training.evaluate import build_parser, evaluate_forecast
from atmorep_coupler.training.trainer import Trainer

sr = pytest.importorskip("scoringrules")

FIELDS, LEVELS = ("temperature", "u_component_of_wind"), (500, 850)


@pytest.fixture(scope="module")
def evaluated(tiny_store):
    """The untrained tiny model scored at leads of 1 and 2 slices on 2 validation batches."""
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config

    torch.set_num_threads(1)
    trainer = Trainer(load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store)))
    result = evaluate_forecast(trainer.raw_model, trainer.validation_sampler, slices=[2, 1], batches=2,
                               progress=False)
    return trainer, result


def weights(sampler, rows, nx):
    """Area weighting applied once over the sampler's windows: band area over the probability that a
    window covers the row (computed here with a loop from the start-row distribution)."""
    lat = np.deg2rad(sampler.store.latitudes)
    bounds = np.concatenate([[np.sign(lat[0]) * np.pi / 2], 0.5 * (lat[1:] + lat[:-1]), [np.sign(lat[-1]) * np.pi / 2]])
    area = np.abs(np.sin(bounds[:-1]) - np.sin(bounds[1:]))
    cover = np.zeros(lat.size)
    for start, p in zip(sampler.row_starts, sampler.row_probability):
        cover[start:start + sampler.extent[1]] += p
    return (area / cover)[rows][..., None] * np.ones(nx)


def test_leads_structure_and_backward_compatible_keys(evaluated):
    _, result = evaluated
    assert [lead["slices"] for lead in result["leads"]] == [1, 2]
    assert [lead["lead_hours"] for lead in result["leads"]] == [3.0, 6.0]  # 1-step tokens, 3-hourly store
    first = result["leads"][0]
    for kind in ("model", "persistence", "climatology", "ratio"):
        assert result[kind] == first[kind]
    assert result["units"] == {"temperature": "K", "u_component_of_wind": "m s-1"}
    assert result["ensemble_size"] == 4 and "in-sample" in result["notes"][0]
    for lead in result["leads"]:
        for key, value in lead["ratio"].items():
            assert value == pytest.approx(lead["model"][key] / lead["persistence"][key])
        for key, value in lead["ratio_climatology"].items():
            assert value == pytest.approx(lead["model"][key] / lead["climatology"][key])
        assert set(lead["ratio"]) == {k for k in lead["model"] if "/rmse" in k}
    json.dumps(result)  # what the CLI prints


def baselines_from_store(trainer, batches: int, leads) -> dict[tuple, float]:
    """``{(kind, lead, field, level): RMSE}`` of persistence and the monthly-mean climatology, from
    whole-store reads and numpy means (no normalization statistics involved)."""
    sampler, store = trainer.validation_sampler, trainer.store
    nt, ny, nx = sampler.extent
    months = store.times.astype("datetime64[M]")
    expected = {}
    for name in FIELDS:
        data = store.read(name, levels=list(LEVELS)).astype(np.float64)  # [time, level, lat, lon]
        climatology = {m: data[months == m].mean(axis=0) for m in np.unique(months)}
        for k, level in enumerate(LEVELS):
            sums = {(kind, s): [0.0, 0.0] for kind in ("persistence", "climatology") for s in leads}
            for index in range(batches):
                for t0, row, col in sampler.draw(index):
                    cols = (col + np.arange(nx)) % store.longitudes.size
                    window = data[t0:t0 + nt, k, row:row + ny][:, :, cols]
                    w = weights(sampler, np.arange(row, row + ny), nx)
                    clim = climatology[months[t0 + nt - 1]][k, row:row + ny][:, cols]
                    for s in leads:  # the last visible step is s steps before the scored (last) one
                        for kind, guess in (("persistence", window[-1 - s]), ("climatology", clim)):
                            sums[kind, s][0] += (w * (guess - window[-1]) ** 2).sum()
                            sums[kind, s][1] += w.sum()
            expected |= {(kind, s, name, level): np.sqrt(num / den) for (kind, s), (num, den) in sums.items()}
    return expected


def test_persistence_and_climatology_match_raw_store_computation(evaluated):
    trainer, result = evaluated
    for (kind, s, name, level), rmse in baselines_from_store(trainer, 2, (1, 2)).items():
        got = result["leads"][s - 1][kind][f"{name}/rmse/{level}hPa"]
        assert got == pytest.approx(rmse, rel=1e-4), (kind, s, name, level)


def test_climatology_of_globally_normalized_fields_is_the_local_monthly_mean(tiny_store):
    """With global normalization the de-normalized 0 is the global mean; climatology stays local."""
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config

    run = load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store))
    fields = tuple(dataclasses.replace(f, normalization="global") if f.predicted else f for f in run.model.fields)
    trainer = Trainer(dataclasses.replace(run, model=dataclasses.replace(run.model, fields=fields)))
    result = evaluate_forecast(trainer.raw_model, trainer.validation_sampler, batches=1, progress=False)
    for (kind, _, name, level), rmse in baselines_from_store(trainer, 1, (1,)).items():
        assert result[kind][f"{name}/rmse/{level}hPa"] == pytest.approx(rmse, rel=1e-4), (kind, name, level)


def test_ensemble_rmse_spread_crps_match_scoringrules(evaluated):
    """The model's members for batch 0 at lead 2, de-normalized with numpy from the stored monthly
    statistics, scored with scoringrules' fair CRPS and numpy."""
    trainer, _ = evaluated
    sampler, store, model = trainer.validation_sampler, trainer.store, trainer.raw_model
    result = evaluate_forecast(model, sampler, slices=2, batches=1, progress=False)["leads"][0]["model"]
    batch = sampler.batch(0)
    masker = Masker(model.config, strategies=(StrategyConfig("forecast", forecast_slices=2),))
    masked = masker(batch.tokens, sampler.seed, (sampler.stream, sampler.rank, 0))
    model.eval()
    with torch.no_grad():
        outputs = model(masked, batch.meta)
    norm, M = store.normalization, model.config.ensemble_size
    for name in FIELDS:
        field = model.config.field(name)
        index = masked[name].target.nonzero().numpy()
        last = index[:, 2] == field.num_tokens[0] - 1
        index, members = index[last], outputs[name].members.numpy()[last][:, :, 0]  # [N, M, y, x]
        origin = batch.origin.numpy()[index[:, 0]]
        time = origin[:, 0] + index[:, 2]
        rows = origin[:, 1:2] + 4 * index[:, 3:4] + np.arange(4)
        cols = (origin[:, 2:3] + 4 * index[:, 4:5] + np.arange(4)) % store.longitudes.size
        at = (month_index(store.times[time])[:, None, None], norm.level_index(field.levels)[index[:, 1]][:, None, None],
              rows[:, :, None], cols[:, None, :])
        mean, std = (getattr(norm, s)(name, np.arange(12), mode="local")[at].astype(np.float64) for s in ("mean", "std"))
        ensemble = mean[:, None] + std[:, None] * members
        data = store.read(name, levels=list(field.levels)).astype(np.float64)
        truth = data[time[:, None, None], index[:, 1][:, None, None], rows[:, :, None], cols[:, None, :]]
        w = weights(sampler, rows, 4)
        crps = sr.crps_ensemble(truth, np.moveaxis(ensemble, 1, -1), estimator="fair")
        for k, level in enumerate(LEVELS):
            on = index[:, 1] == k
            mean_w = lambda x: (w[on] * x[on]).sum() / w[on].sum()  # noqa: E731
            rmse = np.sqrt(mean_w((ensemble.mean(1) - truth) ** 2))
            spread = np.sqrt((M + 1) / M * mean_w(ensemble.var(1, ddof=1)))
            assert result[f"{name}/rmse/{level}hPa"] == pytest.approx(rmse, rel=1e-4)
            assert result[f"{name}/crps/{level}hPa"] == pytest.approx(mean_w(crps), rel=1e-4)
            assert result[f"{name}/spread_corrected/{level}hPa"] == pytest.approx(spread, rel=1e-4)
            assert result[f"{name}/spread_skill/{level}hPa"] == pytest.approx(spread / rmse, rel=1e-4)


def test_lead_must_leave_a_visible_slice(evaluated):
    trainer, _ = evaluated
    with pytest.raises(ConfigError, match=r"--slices 3.forecast_slices: 3 must be < the 3 time slices"):
        evaluate_forecast(trainer.raw_model, trainer.validation_sampler, slices=[1, 3], batches=1, progress=False)


def test_parser_takes_several_leads():
    args = build_parser().parse_args(["--checkpoint", "c.pt", "--slices", "1", "2", "3", "--out", "f.json"])
    assert args.slices == [1, 2, 3] and str(args.out) == "f.json"
