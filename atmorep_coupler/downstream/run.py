"""One downscaling fine-tune end to end, as ``python -m atmorep_coupler.finetune`` runs it: load the
pretrained checkpoint, score the zero-shot model (the fine field fully masked, its new tail untrained),
fine-tune, score again beside bilinear and conservative interpolation, save the weights and the scores."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from atmorep_coupler.model.checkpoint import WEIGHTS_FORMAT, save_state
from atmorep_coupler.config import to_dict
from atmorep_coupler.downstream.evaluate import score_downscaling
from atmorep_coupler.downstream.finetune import fine_tune, mean_loss
from atmorep_coupler.downstream.model import DownscalingConfig, downscaling_model
from atmorep_coupler.downstream.pairs import DownscalingPairs
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.training.config import load_run_config
from atmorep_coupler.training.trainer import load_trainer_state

__all__ = ["load_pretrained", "run_downscaling"]


def load_pretrained(path: str | Path) -> tuple[ModelConfig, dict]:
    """Model config and weights of a trainer checkpoint (format and checksum verified)."""
    state = load_trainer_state(path)
    return load_run_config(yaml.safe_load(state["config"])).model, state["model"]


def run_downscaling(checkpoint: str | Path, coarse: str | Path, fine: str | Path, config: DownscalingConfig,
                    out: str | Path, *, eval_windows: int | None = None, progress: bool = True) -> dict:
    """See the module docstring; returns (and writes to ``out/downscaling.json``) the scores and timings."""
    out = Path(out)
    base, weights = load_pretrained(checkpoint)
    model = downscaling_model(base, weights, config)
    fine_field = model.config.fields[-1]
    probe = DownscalingPairs(str(coarse), str(fine), base, fine_field, batch_size=1)
    times = probe.fine.times
    held_out = (times[-1] - np.timedelta64(int(config.held_out_days * 86400), "s")).astype("datetime64[s]").item()
    train_end = held_out - dt.timedelta(seconds=1)
    pairs = DownscalingPairs(str(coarse), str(fine), base, fine_field, batch_size=config.batch_size,
                             end=train_end, seed=config.seed)
    test = DownscalingPairs(str(coarse), str(fine), base, fine_field, batch_size=1, start=held_out, std=pairs.std)
    zero_shot = score_downscaling({"zero_shot": model}, test, held_out, eval_windows)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    history = fine_tune(model, pairs, config, progress=progress)
    seconds = time.perf_counter() - start
    scores = score_downscaling({"fine_tuned": model}, test, held_out, eval_windows)
    scores["systems"]["zero_shot"] = zero_shot["systems"]["zero_shot"]
    result = {
        "checkpoint": str(checkpoint), "coarse": str(coarse), "fine": str(fine), "held_out_from": held_out.isoformat(),
        "config": to_dict(config), "parameters": {"trainable": trainable, "frozen": frozen},
        "fine_tuning": {"steps": len(history), "seconds": seconds, "torch_threads": threads,
                        "seconds_per_step": seconds / max(len(history), 1),
                        "loss_first_20": mean_loss(history, True), "loss_last_20": mean_loss(history, False)},
        "departure_std": pairs.std.tolist(), "scores": scores,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_state({"model": model.state_dict(), "model_config": yaml.safe_dump(to_dict(model.config), sort_keys=False),
                "downscaling": {"variable": config.variable, "levels": list(config.levels),
                                "refinement": config.refinement, "departure_std": pairs.std.tolist()}},
               out / "finetuned.pt", format=WEIGHTS_FORMAT)
    (out / "downscaling.json").write_text(json.dumps(result, indent=1))
    return result
