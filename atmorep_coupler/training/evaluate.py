"""Forecast skill against persistence on held-out times (the acceptance check of the model issue).

For fixed batches of the validation period, the last ``slices`` time slices of every predicted field
are hidden (``forecast`` strategy) and predicted from the preceding ones (input-only forcing stays
visible: it is prescribed). Persistence repeats the last visible time step. Both are de-normalised to
store units and scored with the latitude-weighted RMSE per field and level (``model.metrics``).

    python -m atmorep_coupler.training.evaluate --checkpoint RUN/checkpoints/last.pt [--batches 16]

prints JSON: per field the model and persistence RMSE, their ratio, and the same per level.
"""

from __future__ import annotations

import argparse
import json

from collections.abc import Sequence

import torch

from tqdm.auto import tqdm

from atmorep_coupler.data.sampler import NeighbourhoodSampler
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import StrategyConfig
from atmorep_coupler.model.masking import Masker
from atmorep_coupler.model.metrics import ScoreAccumulator, level_labels, target_latitudes
from atmorep_coupler.model.multiformer import Multiformer

__all__ = ["evaluate_forecast", "main"]


@torch.no_grad()
def evaluate_forecast(model: Multiformer, sampler: NeighbourhoodSampler, *, slices: int = 1, batches: int = 8,
                      device: str | torch.device = "cpu", progress: bool = True) -> dict[str, dict[str, float]]:
    """Scores ``{"model": {...}, "persistence": {...}, "ratio": {...}}`` keyed like
    ``"temperature/rmse"`` and ``"temperature/rmse/500hPa"`` (store units; ratio = model / persistence)."""
    config = model.config
    masker = Masker(config, strategies=(StrategyConfig("forecast", forecast_slices=slices),))
    levels = {f.name: level_labels(f) for f in config.predicted_fields}
    acc = {"model": ScoreAccumulator(levels), "persistence": ScoreAccumulator(levels)}
    model.eval()
    for index in tqdm(range(batches), desc="forecast evaluation", disable=not progress):
        batch = sampler.batch(index)
        masked = masker(batch.tokens, sampler.seed, (sampler.stream, sampler.rank, index))
        outputs = model({k: v.to(device) for k, v in masked.items()}, {k: v.to(device) for k, v in batch.meta.items()})
        origins = batch.origin.numpy()
        for name, out in outputs.items():
            field = config.field(name)
            clean = batch.tokens[name]
            target = masked[name].target
            T = field.num_tokens[0]
            last = clean[:, :, T - slices - 1, :, :, -1:]  # last visible time step [B, L, Y, X, 1, y, x]
            persistence = clean.clone()
            persistence[:, :, T - slices:] = last.unsqueeze(2)
            prediction = clean.clone()
            prediction[target] = out.mean.float().cpu()
            truth = torch.from_numpy(sampler.denormalize(name, clean, origins))[target]
            index_ = target.nonzero()
            lat = target_latitudes(batch.latitude, index_, field.token_size)
            for kind, tokens in (("model", prediction), ("persistence", persistence)):
                values = torch.from_numpy(sampler.denormalize(name, tokens, origins))[target]
                acc[kind].update(name, values, truth, index_[:, 1], lat)
    result = {kind: a.scores() for kind, a in acc.items()}
    result["ratio"] = {k: v / result["persistence"][k] for k, v in result["model"].items()
                       if result["persistence"].get(k)}
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    parser.add_argument("--store", help="store path, if it moved since training")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--slices", type=int, default=1, help="forecast time slices (lead = slices x token time)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from atmorep_coupler.training.trainer import Trainer

    trainer = Trainer.from_checkpoint(args.checkpoint, store=args.store, device=args.device)
    sampler = trainer.validation_sampler
    if sampler is None:
        raise ConfigError(f"{args.checkpoint}: data.validation is not set; forecast evaluation needs held-out times")
    result = evaluate_forecast(trainer.raw_model, sampler, slices=args.slices, batches=args.batches,
                               device=args.device)
    print(json.dumps(result, indent=2, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
