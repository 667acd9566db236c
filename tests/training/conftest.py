"""Fixtures for the single-process trainer tests: the packaged tiny run on the tiny default store."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import RunConfig, load_run_config


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_run(tiny_store) -> RunConfig:
    """``configs/tiny.yaml`` pointed at the session's tiny default store."""
    return load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store))


def with_model(run: RunConfig, **model_changes) -> RunConfig:
    return dataclasses.replace(run, model=dataclasses.replace(run.model, **model_changes))
