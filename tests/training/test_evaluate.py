"""Forecast evaluation: persistence scores against an independent computation from raw store reads."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.training.evaluate import evaluate_forecast
from atmorep_coupler.training.trainer import Trainer


def test_persistence_rmse_matches_raw_store_computation(tiny_run):
    trainer = Trainer(tiny_run)
    sampler = trainer.validation_sampler
    result = evaluate_forecast(trainer.raw_model, sampler, batches=2, progress=False)
    store = trainer.store
    nt, ny, nx = sampler.extent
    for name in ("temperature", "u_component_of_wind"):
        for level in (500, 850):
            num = den = 0.0
            for index in range(2):
                for t0, row, col in sampler.draw(index):
                    window = store.read(name, time=slice(t0, t0 + nt), levels=[level], lat=slice(row, row + ny),
                                        lon=(col + np.arange(nx)) % store.longitudes.size)[:, 0].astype(np.float64)
                    weight = np.cos(np.deg2rad(store.latitudes[row:row + ny]))[:, None] * np.ones(nx)
                    num += (weight * (window[-2] - window[-1]) ** 2).sum()  # last visible step vs forecast step
                    den += weight.sum()
            key = f"{name}/rmse/{level}hPa"
            assert result["persistence"][key] == pytest.approx(np.sqrt(num / den), rel=1e-4)
            assert result["ratio"][key] == pytest.approx(result["model"][key] / result["persistence"][key])
            assert np.isfinite(result["model"][key]) and result["model"][key] > 0
