"""One downscaling fine-tune end to end, as ``python -m atmorep_coupler.finetune`` runs it: load the
pretrained checkpoint, score the zero-shot model (the fine field fully masked, its new tail untrained),
fine-tune, score again beside bilinear and conservative interpolation, save the fine-tuned checkpoint
(:data:`~atmorep_coupler.model.checkpoint.FINETUNED_FORMAT`: what the AtmoRep component needs to export the
downscaled field in a coupled run) and the scores."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from atmorep_coupler.config import to_dict
from atmorep_coupler.data.store import open_store
from atmorep_coupler.downstream.evaluate import score_downscaling
from atmorep_coupler.downstream.finetune import fine_tune, mean_loss
from atmorep_coupler.downstream.model import DownscalingConfig, downscaling_model
from atmorep_coupler.downstream.pairs import DownscalingPairs
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.checkpoint import FINETUNED_FORMAT, check_statistics, load_checkpoint, save_state
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.model.multiformer import Multiformer
from atmorep_coupler.training.config import load_run_config

__all__ = ["load_pretrained", "run_downscaling", "save_finetuned"]


def load_pretrained(path: str | Path) -> tuple[ModelConfig, dict]:
    """Model config and state of a pretrained trainer checkpoint (format and checksum verified)."""
    model, state = load_checkpoint(path)
    if "optimizer" not in state:
        raise CheckpointError(f"{path}: a fine-tuned checkpoint; fine-tuning starts from a pretrained trainer "
                              "checkpoint (a trainer.pt or checkpoints/*.pt of python -m atmorep_coupler.train)")
    load_run_config(yaml.safe_load(state["config"]))  # the whole run config is valid
    return model, state


def downscaling_record(model: Multiformer, pairs: DownscalingPairs, variable: str) -> dict:
    """What inference needs to turn the fine field's output into the field (``model.checkpoint.DOWNSCALING_KEYS``):
    the fine grid, the departure scale, and the model field whose state is interpolated for the baseline
    (the predicted field of the same store variable on the model grid with the fine field's levels; None
    when the pretrained model has none, and then a coupled run refuses the checkpoint)."""
    fine = model.config.fields[-1]
    canonical = pairs.fine.resolve(variable)
    coarse = [f.name for f in model.config.predicted_fields
              if f.grid_refinement == 1 and not f.transform and pairs.coarse.resolve(f.variable) == canonical
              and set(fine.levels) <= set(f.levels)]
    return {"field": fine.name, "variable": canonical, "coarse_field": coarse[0] if coarse else None,
            "levels": [float(p) for p in fine.levels], "refinement": fine.grid_refinement,
            "departure_std": [float(v) for v in pairs.std], "latitudes": pairs.fine.latitudes.tolist(),
            "longitudes": pairs.fine.longitudes.tolist(), "baseline": "bilinear"}


def save_finetuned(path: Path, model: Multiformer, pretrained: str | Path, state: dict, record: dict) -> Path:
    """The fine-tuned checkpoint: the pretrained run config with the fine-tuned model section, the weights,
    the pretrained checkpoint's normalization and data records (the coarse fields are normalized as in
    pretraining) and the fine field's downscaling record."""
    run = yaml.safe_load(state["config"])
    run["model"] = to_dict(model.config)
    return save_state({"config": yaml.safe_dump(run, sort_keys=False), "model": model.state_dict(),
                       "normalization": state["normalization"], "data": state.get("data", {}),
                       "downscaling": [record], "pretrained": str(pretrained)}, path, format=FINETUNED_FORMAT)


def run_downscaling(checkpoint: str | Path, coarse: str | Path, fine: str | Path, config: DownscalingConfig,
                    out: str | Path, *, eval_windows: int | None = None, progress: bool = True) -> dict:
    """See the module docstring; returns (and writes to ``out/downscaling.json``) the scores and timings."""
    out = Path(out)
    base, state = load_pretrained(checkpoint)
    # the pretrained fields must be fed as in pretraining: the coarse store's statistics are the checkpoint's
    store = open_store(str(coarse))
    check_statistics(checkpoint, state, store.normalization, store.latitudes, store.longitudes, str(coarse),
                     fix="fine-tune on the pair whose coarse store the checkpoint was pretrained on (make-paired's "
                         "coarse.zarr, train --store PAIR/coarse.zarr)")
    model = downscaling_model(base, state["model"], config)
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
    save_finetuned(out / "finetuned.pt", model, checkpoint, state, downscaling_record(model, pairs, config.variable))
    (out / "downscaling.json").write_text(json.dumps(result, indent=1))
    return result
