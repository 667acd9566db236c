"""Training: the run configuration, the single-process ``Trainer`` (exact resume, logs, checkpoints)
and the forecast-vs-persistence evaluation. Distributed training wraps the same ``Trainer``."""

from __future__ import annotations

from atmorep_coupler.training.config import RunConfig, load_run_config
from atmorep_coupler.training.trainer import Trainer

__all__ = ["RunConfig", "Trainer", "load_run_config"]
