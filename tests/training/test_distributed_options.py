"""Requests that ``train --num-workers`` refuses before it starts Ray, each with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from atmorep_coupler.errors import ConfigError
from atmorep_coupler.train import config_path, train
from atmorep_coupler.training.config import load_run_config
from atmorep_coupler.training.distributed import DistributedOptions, train_distributed


def options(**changes) -> DistributedOptions:
    return DistributedOptions(**({"num_workers": 2, "run_name": "run", "storage": Path("/tmp/runs")} | changes))


@pytest.mark.parametrize("changes, message", [
    ({"gpus_per_worker": 2}, "--gpus-per-worker 2: must be 0 (CPU) or 1"),
    ({"cpus_per_worker": 0.0}, "--cpus-per-worker 0.0: must be > 0"),
    ({"storage": Path("runs")}, "--storage 'runs': must be an absolute path"),
    ({"run_name": "a/b"}, "--run-name 'a/b': must be a plain folder name"),
    ({"strategy": "zero3"}, "--strategy 'zero3'"),
    ({"max_failures": -2}, "--max-failures -2"),
])
def test_bad_options_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options(**changes).validate()


def test_validation_batches_must_cover_every_worker():
    config = load_run_config(config_path("tiny"))  # 2 validation batches
    with pytest.raises(ConfigError, match="validation.batches: 2 fixed batches cannot be split over 3 workers"):
        train_distributed(config, options(num_workers=3))


def test_cluster_runs_need_an_absolute_storage(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # never contacted: the check comes first
    with pytest.raises(ConfigError, match="give an absolute path on a Ray cluster"):
        train(["--config", "tiny", "--num-workers", "2", "--storage", "relative/runs"])


def test_forecast_evaluation_stays_single_process():
    with pytest.raises(ConfigError, match="--evaluate-forecast runs in one process"):
        train(["--config", "tiny", "--num-workers", "2", "--evaluate-forecast", "4"])
