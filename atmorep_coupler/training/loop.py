"""The training loop, once, for the single-process path (``Trainer.fit``) and the Ray path (``distributed.py``).

The loop owns the cadence: an optimiser step per iteration; training metrics at every
``logging.every_steps``-th step and at the last one (logged there, also computed at periodic checkpoints
for the Ray report); validation at every ``validation.every_steps``-th step and at the last one; a
periodic checkpoint at every ``checkpoint.every_steps``-th step before the last; the final checkpoint
after the loop. ``samples_per_s`` is the (global) samples since the previous computation over the wall
time since then.

What differs between the paths comes through :class:`LoopHooks`: how a rank's metrics become the logged
ones (as they are, or averaged over ranks: a collective, so every rank calls it at the same steps), how a
checkpoint is written (files under ``log_dir``, or ``ray.train.report``) and what the end of the run
leaves (``last.pt``, or a final report and ``result.json``). Logs, the progress bar and the validation
lines printed are rank 0's.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from atmorep_coupler.training.config import RunConfig

__all__ = ["LoopHooks", "MetricsLogger", "Steppable", "train_loop"]


class Steppable(Protocol):
    """What the loop needs of a trainer (:class:`~atmorep_coupler.training.trainer.Trainer`)."""

    config: RunConfig
    step: int
    rank: int
    world_size: int
    validation_sampler: object | None

    def train_step(self) -> dict[str, float]: ...

    def validate(self) -> dict[str, float]: ...


class LoopHooks(Protocol):
    """What a path supplies to :func:`train_loop`."""

    def reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        """This rank's metrics of a step -> the metrics logged for it (every rank calls this at the same steps)."""

    def checkpoint(self, step: int, metrics: Mapping[str, float]) -> None:
        """A periodic checkpoint at ``step`` (never the last step: :meth:`finish` writes that one)."""

    def finish(self, metrics: Mapping[str, float], stepped: bool) -> None:
        """After the last step: the final checkpoint and summary; ``stepped``: whether this call took any step."""


def train_loop(trainer: Steppable, hooks: LoopHooks, *, end: int, logger: MetricsLogger | None = None,
               bar: Any = None) -> dict[str, float]:
    """Train ``trainer`` until step ``end`` (module docstring); returns the last logged training metrics, with
    ``val/...`` of a validation at that step. ``logger`` and ``bar`` (a tqdm-like progress bar) are closed."""
    cfg = trainer.config
    every_log, every_val, every_ckpt = cfg.logging.every_steps, cfg.validation.every_steps, cfg.checkpoint.every_steps
    start = trainer.step
    metrics: dict[str, float] = {}
    samples, clock = 0.0, time.perf_counter()
    try:
        while trainer.step < end:
            local = trainer.train_step()
            step, last = trainer.step, trainer.step == end
            samples += local["samples"]
            logged = last or bool(every_log and step % every_log == 0)
            periodic = bool(every_ckpt and step % every_ckpt == 0) and not last
            if logged or periodic:
                metrics = hooks.reduce(local)
                now = time.perf_counter()
                metrics["samples_per_s"] = samples * trainer.world_size / (now - clock)
                samples, clock = 0.0, now
                if logger and logged:
                    logger.log("train", step, metrics)
            if trainer.validation_sampler is not None and every_val and (step % every_val == 0 or last):
                val = trainer.validate()
                metrics.update({f"val/{k}": v for k, v in val.items()})
                if logger:
                    logger.log("validation", step, val)
                if trainer.rank == 0:
                    tqdm.write(f"step {step}: validation loss {val['loss']:.4f}")  # around a tqdm bar, if any
            if bar is not None:
                bar.update(1)
                bar.set_description(f"training (loss {local['loss']:.4f})")
            if periodic:
                hooks.checkpoint(step, metrics)
    finally:
        if logger:
            logger.close()
        if bar is not None:
            bar.close()
    hooks.finish(metrics, stepped=trainer.step > start)
    return metrics


class MetricsLogger:
    """CSV files (``train.csv``, ``validation.csv``; appended on resume) and TensorBoard scalars."""

    def __init__(self, folder: Path, tensorboard: bool):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._writers: dict[str, tuple] = {}
        self.tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(folder / "tensorboard"))

    def log(self, kind: str, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": step, **metrics}
        if kind not in self._writers:
            path = self.folder / f"{kind}.csv"
            new = not path.exists()
            handle = path.open("a", newline="")
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore", lineterminator="\n")
            if new:
                writer.writeheader()
            self._writers[kind] = (handle, writer)
        handle, writer = self._writers[kind]
        writer.writerow(row)
        handle.flush()
        if self.tensorboard is not None:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        for handle, _ in self._writers.values():
            handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
