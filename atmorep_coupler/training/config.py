"""The training run configuration: model, data, losses, optimiser, schedule, checkpoints, logging.

One YAML file describes a run (see ``atmorep_coupler/configs/``); it is loaded strictly
(``load_run_config``) and stored as YAML text in every checkpoint, so a checkpoint alone is enough to
resume (no single-line JSON, no tracker-issued run ids).
"""

from __future__ import annotations

import datetime as dt

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml

from atmorep_coupler.config import Validated, from_dict, load_yaml, to_dict
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.model.losses import LOSSES

__all__ = [
    "Period",
    "DataConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "ValidationConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "InitFromConfig",
    "RolloutConfig",
    "RunConfig",
    "load_run_config",
    "run_config_to_yaml",
    "run_config_from_yaml",
]


@dataclass(frozen=True)
class Period(Validated):
    """Time range ``[start, end]`` (inclusive); a missing bound means the start or end of the record."""

    start: dt.datetime | None = None
    """First time (inclusive); null: the start of the record."""
    end: dt.datetime | None = None
    """Last time (inclusive); null: the end of the record."""

    def validate(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ConfigError(f"end {self.end} is before start {self.start}")

    def overlaps(self, other: Period) -> bool:
        lo = max(self.start or dt.datetime.min, other.start or dt.datetime.min)
        hi = min(self.end or dt.datetime.max, other.end or dt.datetime.max)
        return lo <= hi


@dataclass(frozen=True)
class DataConfig(Validated):
    store: str
    """Path or fsspec URL of the ERA5-layout zarr store (with its normalization statistics); ``--store``
    overrides it."""
    train: Period = field(default_factory=Period)
    """Training period."""
    validation: Period | None = None
    """Held-out validation period (must not overlap ``train``); required for validation and evaluation."""
    batch_size: int = 8
    """Neighbourhoods per batch and rank."""
    samples_per_window: int = 4
    """Neighbourhoods drawn per time window (hierarchical sampling)."""
    num_workers: int = 0
    """DataLoader worker processes; the batch stream does not depend on it."""
    max_slab_bytes: int = 64 * 2**20
    """Read a time window of the whole globe at once when it is at most this large (bytes)."""

    def validate(self) -> None:
        if self.validation is not None and self.train.overlaps(self.validation):
            raise ConfigError(
                f"train period {self.train.start} .. {self.train.end} overlaps validation period "
                f"{self.validation.start} .. {self.validation.end}; validation must be held out"
            )
        if self.batch_size < 1 or self.samples_per_window < 1 or self.num_workers < 0:
            raise ConfigError("batch_size and samples_per_window must be >= 1, num_workers >= 0")


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 3e-4
    """Peak learning rate (after warm-up)."""
    weight_decay: float = 0.05
    """AdamW weight decay, on matrices only (not biases, norms, mask embeddings)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Maximum global gradient norm; <= 0 disables clipping."""


@dataclass(frozen=True)
class ScheduleConfig:
    warmup_steps: int = 100
    """Steps of linear warm-up from 0."""
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay over the remaining ``steps``."""
    min_lr_ratio: float = 0.1
    """Floor of the decay, as a fraction of the peak."""


@dataclass(frozen=True)
class ValidationConfig:
    every_steps: int = 200
    """Validate every this many steps; 0 disables periodic validation."""
    batches: int = 4
    """Fixed batches from the validation period, split across ranks."""


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 500
    """Checkpoint every this many steps; 0: only at the end."""
    keep: int = 2
    """Periodic checkpoints kept besides ``last.pt``."""


@dataclass(frozen=True)
class LoggingConfig:
    every_steps: int = 10
    """Log metrics every this many steps."""
    tensorboard: bool = True
    """Also write TensorBoard event files (besides the CSV logs)."""


@dataclass(frozen=True)
class InitFromConfig:
    """Initialise fields from a checkpoint (plug-and-play): e.g. single-field runs seeding a
    multiformer, or a trained model whose fields stay frozen while a new field is added."""

    checkpoint: str
    """Trainer checkpoint to take weights from."""
    fields: tuple[str, ...] = ()
    """Fields to initialise; empty: every field present in both."""
    freeze: bool = False
    """Keep the initialised fields frozen (e.g. while a new field is added)."""


@dataclass(frozen=True)
class RolloutConfig(Validated):
    """Forecast batches whose context is the network's own forecasts (``training/rollout.py``)."""

    max_steps: int = 0
    """Each forecast batch draws k uniformly from 0 .. max_steps and first forecasts the k time slices before
    its own window, one at a time and without gradient, feeding each forecast back as the context of the
    next, so that the trained forecast starts from the errors a coupled run feeds itself (up to
    ``max_steps`` steps of them). 0: the truth's past is the context, always."""

    def validate(self) -> None:
        if self.max_steps < 0:
            raise ConfigError(f"rollout.max_steps: {self.max_steps} must be >= 0")


@dataclass(frozen=True)
class RunConfig(Validated):
    model: ModelConfig
    """The multiformer (reference: model_config.md)."""
    data: DataConfig
    """Store, periods and batches."""
    losses: dict[str, float] = field(default_factory=lambda: {"mse_ensemble": 1.0, "stats": 1.0})
    """Loss name -> weight; the names are the keys of ``atmorep_coupler.model.losses.LOSSES`` (docs/model.md)."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """AdamW settings."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    """Periodic validation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Periodic checkpoints."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Metric logs."""
    init_from: tuple[InitFromConfig, ...] = ()
    """Checkpoints to initialise fields from (plug and play)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Forecast batches started from the network's own earlier forecasts (pushforward training)."""
    steps: int = 1000
    """Training steps of the run (also the horizon of the learning-rate decay); ``--steps`` overrides it."""
    seed: int = 0
    """Seed of the sampler, the masking and the initial weights."""
    amp: bool = True
    """bf16 autocast on CUDA devices; no effect on CPU."""
    compile: bool = False
    """``torch.compile`` the whole multiformer (training and validation): faster steps after a one-off compilation
    at the first step of each new shape (needs a C++ compiler on CPU)."""

    def validate(self) -> None:
        unknown = [name for name in self.losses if name not in LOSSES]
        if unknown or not self.losses:
            raise ConfigError(f"losses: {unknown or '{}'} not among the known losses {sorted(LOSSES)}")
        if any(w <= 0 for w in self.losses.values()):
            raise ConfigError(f"losses: weights {self.losses} must be > 0")
        if self.steps < 1:
            raise ConfigError(f"steps: {self.steps} must be >= 1")
        if self.rollout.max_steps:
            self._check_rollout()

    def _check_rollout(self) -> None:
        """A rollout slides the window by one token time slice of the predicted fields: they must share its
        length, and each forecast must be of that one slice."""
        forecasts = [s for s in self.model.strategies if s.kind == "forecast"]
        if not forecasts:
            raise ConfigError("rollout.max_steps: the model's strategies have no forecast to roll out")
        if any(s.forecast_slices != 1 for s in forecasts):
            raise ConfigError("rollout.max_steps: rolled-out forecasts must have forecast_slices: 1, not "
                              f"{[s.forecast_slices for s in forecasts]}")
        sizes = {f.name: f.token_size[0] for f in self.model.predicted_fields}
        if len(set(sizes.values())) != 1:
            raise ConfigError(f"rollout.max_steps: the predicted fields' token time sizes differ ({sizes}); a "
                              "rollout slides all of them by one token")

    def with_overrides(self, *, steps: int | None = None, store: str | None = None,
                       init_from: str | None = None) -> RunConfig:
        """A copy with command-line overrides applied (``init_from``: every field from that checkpoint)."""
        run = self if steps is None else replace(self, steps=steps)
        run = run if init_from is None else replace(run, init_from=(InitFromConfig(checkpoint=str(init_from)),))
        return run if store is None else replace(run, data=replace(run.data, store=store))


def load_run_config(source: str | Path | dict) -> RunConfig:
    """Read and validate a run YAML (or a mapping)."""
    return load_yaml(RunConfig, source)


def run_config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def run_config_from_yaml(text: str, *, origin: str = "<checkpoint>") -> RunConfig:
    return from_dict(RunConfig, yaml.safe_load(text), origin=origin)
