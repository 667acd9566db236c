"""The fine-tuning loop: AdamW on the parameters that still take gradients (the new field's alone when the
pretrained network is frozen), the configured ensemble losses on the fine field's targets."""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from atmorep_coupler.downstream.model import DownscalingConfig
from atmorep_coupler.downstream.pairs import DownscalingPairs, downscaling_masks
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.losses import total_loss
from atmorep_coupler.model.multiformer import Multiformer

__all__ = ["fine_tune", "trainable_parameters"]


def trainable_parameters(model: Multiformer) -> list[torch.nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("every parameter is frozen: nothing to fine-tune")
    return params


def fine_tune(model: Multiformer, pairs: DownscalingPairs, config: DownscalingConfig, *, steps: int | None = None,
              progress: bool = True) -> list[dict[str, float]]:
    """Train ``model``'s fine field on ``pairs`` for ``steps`` (default ``config.steps``); returns per-step
    loss and seconds."""
    name = pairs.field.name
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=config.lr, weight_decay=0.0)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    history = []
    model.train()
    for step in tqdm(range(config.steps if steps is None else steps), desc="fine-tune", disable=not progress):
        start = time.perf_counter()
        batch = pairs.batch(step)
        masked = downscaling_masks(batch.tokens, name)
        out = model(masked, batch.meta)
        loss, _ = total_loss({name: out[name]}, {name: masked[name].targets}, config.losses, {name: 1.0})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tuning loss {float(loss)} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        history.append({"step": step, "loss": float(loss.detach()), "seconds": time.perf_counter() - start})
    model.eval()
    return history


def mean_loss(history: list[dict[str, float]], first: bool, n: int = 20) -> float:
    """Mean loss of the first or last ``n`` steps (a stated fall needs more than one noisy batch)."""
    part = history[:n] if first else history[-n:]
    return math.fsum(h["loss"] for h in part) / max(len(part), 1)
