"""Fixtures for the single-process trainer tests: the packaged tiny run on the tiny default store."""

from __future__ import annotations

import dataclasses

import pytest

from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import RunConfig, load_run_config



@pytest.fixture
def tiny_run(tiny_store) -> RunConfig:
    """``configs/tiny.yaml`` pointed at the session's tiny default store."""
    return load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store))


def with_model(run: RunConfig, **model_changes) -> RunConfig:
    return dataclasses.replace(run, model=dataclasses.replace(run.model, **model_changes))
