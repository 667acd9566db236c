"""Single-process training loop with exact resume; the Ray path wraps the same class.

``Trainer`` owns the model, optimiser (AdamW), schedule (linear warm-up, then cosine/linear decay to a
floor), the batch streams and the checkpoint format. One ``train_step`` is one optimiser step on the
next batch of this rank's stream; ``validate`` scores fixed batches of the held-out period;
``fit`` runs the training loop (``training/loop.py``, shared with the Ray path) with a progress bar,
CSV + TensorBoard logs and checkpoint files.

Distributed training (``training/distributed.py``) passes ``rank``/``world_size``, a ``wrap_model``
(e.g. ``ray.train.torch.prepare_model``) and ``reduce_metrics``, a function that **sums** a
``dict[str, float]`` across ranks (validation adds up additive statistics, then computes scores).

Exact resume: a checkpoint holds the model, optimiser and scheduler states, the step (which is
also the position of the batch stream: batch ``k`` is a pure function of (seed, rank, k)), the torch
RNG state (dropout), the frozen parameter names, the run config as YAML text, a fingerprint of the
normalization statistics and what inference must repeat of the data (``data``: the time step, per field the
units and whether missing values occurred and how they were filled; ``NeighbourhoodSampler.record``). It
contains only tensors, numbers, strings, lists and dicts, so ``torch.load(path, weights_only=True)`` reads
it; ``model/checkpoint.py`` adds its format version and a checksum, verified on load. On CPU a resumed run
continues bit for bit.

Activation checkpointing ``auto`` is decided here, where device and batch size are known
(:func:`~atmorep_coupler.model.multiformer.checkpointing_needed`); ``compile`` compiles the (wrapped) model
once, for training and validation alike.

Mixed precision: bf16 autocast on CUDA when ``amp`` (bf16 has fp32's range, so no loss scaling and no
GradScaler state is needed); the ensemble tail and the losses run in fp32. No effect on CPU.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from tqdm.auto import tqdm

from atmorep_coupler.data.sampler import VALIDATION_STREAM, BatchStream, NeighbourhoodSampler, TRAIN_STREAM, batch_loader
from atmorep_coupler.data.store import open_store
from atmorep_coupler.errors import CheckpointError, ConfigError
from atmorep_coupler.model.checkpoint import TRAINER_FORMAT, load_trainer_state, normalization_fingerprint, save_state
from atmorep_coupler.model.losses import total_loss
from atmorep_coupler.model.masking import Masker
from atmorep_coupler.model.metrics import ScoreAccumulator, level_labels, scores, target_rows
from atmorep_coupler.model.multiformer import Multiformer, checkpointing_needed, compile_model, load_fields, load_weights
from atmorep_coupler.training.config import RunConfig, run_config_from_yaml, run_config_to_yaml
from atmorep_coupler.training.loop import MetricsLogger, train_loop
from atmorep_coupler.training.rollout import draw_rollout_steps, roll_out_context

__all__ = ["Trainer", "WarmupDecay", "MetricsLogger", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = TRAINER_FORMAT


class WarmupDecay:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then decay to ``floor`` at ``total``."""

    def __init__(self, warmup: int, total: int, decay: str, floor: float):
        self.warmup, self.total, self.decay, self.floor = warmup, total, decay, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.decay == "cosine" else 1 - progress
        return self.floor + (1 - self.floor) * shape


def _stream_seed(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint64)[0] >> 1)


class Trainer:
    def __init__(self, run_config: RunConfig, *, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu", wrap_model: Callable | None = None,
                 reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
                 log_dir: str | Path | None = None, frozen: list[str] | None = None):
        """``frozen``: parameter names to freeze instead of applying ``init_from`` (used on resume)."""
        self.config = run_config
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.reduce_metrics = reduce_metrics
        self.log_dir = Path(log_dir) if log_dir is not None else None
        cfg = run_config.model
        torch.manual_seed(run_config.seed)  # identical initial weights on every rank
        self.raw_model = Multiformer(cfg)
        if frozen is None:
            frozen = []
            for init in run_config.init_from:
                loaded = load_fields(self.raw_model, init.checkpoint, list(init.fields) or None, freeze=init.freeze)
                frozen += loaded if init.freeze else []
        params = dict(self.raw_model.named_parameters())
        for name in frozen:
            params[name].requires_grad_(False)
        self.frozen = [n for n, p in params.items() if not p.requires_grad]
        self.raw_model.activation_checkpointing = checkpointing_needed(self.raw_model, run_config.data.batch_size,
                                                                       self.device)
        self.raw_model.to(self.device)
        self.model = wrap_model(self.raw_model) if wrap_model else self.raw_model
        if run_config.compile:
            self.model = compile_model(self.model)
        self.optimizer = self._build_optimizer()
        total = run_config.steps
        sched = run_config.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupDecay(sched.warmup_steps, total, sched.decay, sched.min_lr_ratio)
        )
        self.step = 0
        torch.manual_seed(_stream_seed(run_config.seed, 2, rank))  # dropout stream of this rank
        data = run_config.data
        self.store = open_store(data.store)
        self.masker = Masker(cfg)
        self.train_sampler = self._sampler(TRAIN_STREAM, data.train, rank)
        self.validation_sampler = self._sampler(VALIDATION_STREAM, data.validation, 0) if data.validation else None
        self._batches: Iterator | None = None
        self._levels = {f.name: level_labels(f) for f in cfg.predicted_fields}
        self._field_weights = {f.name: f.loss_weight for f in cfg.predicted_fields}
        use_amp = run_config.amp and self.device.type == "cuda"
        self._autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext

    # ------------------------------------------------------------------------------ construction
    def _build_optimizer(self) -> torch.optim.AdamW:
        opt = self.config.optimizer
        trainable = [(n, p) for n, p in self.raw_model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("every parameter is frozen: nothing to train (check init_from[].freeze)")
        groups = [
            {"params": [p for _, p in trainable if p.ndim >= 2], "weight_decay": opt.weight_decay},
            {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ]
        # the fused kernel: one pass over each tensor instead of a dozen (2-3x faster steps on CPU)
        return torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, fused=self.device.type in ("cpu", "cuda"))

    def _sampler(self, stream: int, period, rank: int) -> NeighbourhoodSampler:
        data = self.config.data
        history = self._rollout_slice * self.config.rollout.max_steps if stream == TRAIN_STREAM else 0
        return NeighbourhoodSampler(
            self.store, self.config.model, batch_size=data.batch_size, start=period.start, end=period.end,
            samples_per_window=data.samples_per_window, seed=self.config.seed, stream=stream, rank=rank,
            max_slab_bytes=data.max_slab_bytes, history_steps=history,
        )

    @property
    def _rollout_slice(self) -> int:
        """Time steps in one token time slice of the predicted fields: a rollout's stride."""
        return self.config.model.predicted_fields[0].token_size[0]

    def _roll_out(self, index: int, batch, masked):
        """A forecast batch's context replaced by a rollout of its own (``training/rollout.py``); other
        batches as they are."""
        cfg = self.config
        key = (self.train_sampler.stream, self.train_sampler.rank, index)
        if not cfg.rollout.max_steps or self.masker.strategy(cfg.seed, key)[0].kind != "forecast":
            return masked
        steps = draw_rollout_steps(cfg.seed, key, cfg.rollout.max_steps)
        origins = batch.origin.numpy()
        stride = np.array([self._rollout_slice, 0, 0])
        earlier = lambda j: self.train_sampler.read(origins - j * stride)  # noqa: E731
        with self._autocast():
            return roll_out_context(self.raw_model, cfg.model, masked, earlier, steps, self.device)

    def _loader(self, stream: BatchStream) -> Iterator:
        return batch_loader(stream, self.config.data.num_workers, pin_memory=self.device.type == "cuda")

    # ------------------------------------------------------------------------------ steps
    def _forward(self, batch, masked):
        masked = {k: v.to(self.device) for k, v in masked.items()}
        meta = {k: v.to(self.device) for k, v in batch.meta.items()}
        with self._autocast():
            outputs = self.model(masked, meta)
        targets = {k: masked[k].targets for k in outputs}
        loss, parts = total_loss(outputs, targets, self.config.losses, self._field_weights)
        return outputs, masked, loss, parts

    def train_step(self) -> dict[str, float]:
        """One optimiser step on the next batch of this rank's stream."""
        if self._batches is None:
            self._batches = self._loader(BatchStream(self.train_sampler, self.masker, start=self.step))
        index, batch, masked = next(self._batches)
        if index != self.step:  # the stream position is the step; anything else is a bug
            raise RuntimeError(f"batch stream at index {index}, trainer at step {self.step}")
        self.model.train()
        masked = self._roll_out(index, batch, masked)
        _, _, loss, parts = self._forward(batch, masked)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.optimizer.grad_clip
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        metrics = {"loss": float(loss.detach()), "lr": lr, "grad_norm": float(grad_norm),
                   "samples": float(self.config.data.batch_size)}
        metrics.update({k: float(v) for k, v in parts.items()})
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and area-weighted scores on the fixed validation batches (summed across ranks)."""
        if self.validation_sampler is None:
            raise ConfigError("data.validation: no validation period configured")
        n = self.config.validation.batches
        stream = BatchStream(self.validation_sampler, self.masker, start=self.rank, stop=n, step=self.world_size)
        acc = ScoreAccumulator(self._levels, self.config.model.ensemble_size)
        loss_sum, count = 0.0, 0
        self.model.eval()
        for _, batch, masked in self._loader(stream):
            outputs, masked, loss, _ = self._forward(batch, masked)
            loss_sum, count = loss_sum + float(loss), count + 1
            row_weight = batch.row_weight.to(self.device)
            for name, out in outputs.items():
                field = self.config.model.field(name)
                index = masked[name].target_index
                acc.update(name, out.mean, masked[name].targets, index[:, 1],
                           target_rows(row_weight, index, field.token_size), out.members)
        sums = acc.sums() | {"loss_sum": loss_sum, "batches": float(count)}
        if self.reduce_metrics is not None:
            sums = self.reduce_metrics(sums)
        result = scores({k: v for k, v in sums.items() if "/" in k}, self.config.model.ensemble_size)
        result["loss"] = sums["loss_sum"] / max(sums["batches"], 1.0)
        return result

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": run_config_to_yaml(self.config),
            "step": self.step,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None},
            "frozen": list(self.frozen),
            "sampler": {"seed": self.config.seed, "rank": self.rank, "next_index": self.step},
            "normalization": {"store": str(self.store.path), "source": str(self.store.normalization.source),
                              "fingerprint": normalization_fingerprint(self.store.normalization)},
            "data": self.train_sampler.record(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not a trainer checkpoint (format {state.get('format')!r}, "
                                  f"expected {CHECKPOINT_FORMAT!r})")
        fingerprint = normalization_fingerprint(self.store.normalization)
        if state["normalization"]["fingerprint"] != fingerprint:
            raise CheckpointError(
                f"normalization statistics of store {str(self.store.path)!r} differ from those the "
                f"checkpoint was trained with ({state['normalization']['source']}); use the same store "
                "or statistics, or start a new run with init_from"
            )
        load_weights(self.raw_model, state["model"], "checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_scheduler(state["scheduler"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._batches = None  # restart the stream at the restored step

    def _load_scheduler(self, state: Mapping) -> None:
        """Restore the schedule's position but keep this run's shape (warm-up, decay, horizon).

        ``LambdaLR.load_state_dict`` would also restore the saved ``WarmupDecay`` attributes, so a run
        resumed with more ``steps`` would keep decaying to the old horizon. The learning rates are then
        recomputed exactly as ``LambdaLR.step`` does, so an unchanged config resumes bit for bit.
        """
        state = dict(state)
        state["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict(state)
        step = self.scheduler.last_epoch
        lrs = [base * fn(step) for base, fn in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write atomically (temporary file, then rename), so a crash never leaves half a checkpoint."""
        return save_state(self.state_dict(), path, format=CHECKPOINT_FORMAT)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, store: str | None = None, steps: int | None = None,
                        **kwargs) -> Trainer:
        """Rebuild a trainer from ``path`` (config included) and restore its state; ``store`` points
        to the data if it moved, ``steps`` extends the run (and its schedule horizon)."""
        state = load_trainer_state(path)
        config = run_config_from_yaml(state["config"], origin=f"{path}: config").with_overrides(
            steps=steps, store=store)
        trainer = cls(config, frozen=state["frozen"], **kwargs)
        trainer.load_state_dict(state)
        return trainer

    # ------------------------------------------------------------------------------ local loop
    def fit(self, num_steps: int | None = None, *, progress: bool = True) -> dict[str, float]:
        """Train until step ``num_steps`` (default ``config.steps``) with logs and checkpoints under
        ``log_dir`` (:func:`~atmorep_coupler.training.loop.train_loop`); returns the last logged training
        metrics (plus ``val/...`` of the last validation)."""
        end = self.config.steps if num_steps is None else num_steps
        main = self.rank == 0 and self.log_dir is not None
        logger = MetricsLogger(self.log_dir, self.config.logging.tensorboard) if main else None
        bar = tqdm(total=end, initial=self.step, desc="training", unit="step") if progress and self.rank == 0 else None
        return train_loop(self, _LocalCheckpoints(self, main), end=end, logger=logger, bar=bar)


class _LocalCheckpoints:
    """:class:`~atmorep_coupler.training.loop.LoopHooks` of one process: metrics as they are, checkpoint files
    under ``log_dir/checkpoints`` (``step_<n>.pt``, the newest ``keep``, and ``last.pt``)."""

    def __init__(self, trainer: Trainer, main: bool) -> None:
        self.trainer, self.main = trainer, main

    def reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        return dict(metrics)

    def checkpoint(self, step: int, metrics) -> None:
        if not self.main:
            return
        folder = self.trainer.log_dir / "checkpoints"
        self.trainer.save_checkpoint(folder / f"step_{step:08d}.pt")
        self.trainer.save_checkpoint(folder / "last.pt")
        for path in sorted(folder.glob("step_*.pt"))[: -self.trainer.config.checkpoint.keep or None]:
            path.unlink()

    def finish(self, metrics, stepped: bool) -> None:
        if self.main:
            self.trainer.save_checkpoint(self.trainer.log_dir / "checkpoints" / "last.pt")
