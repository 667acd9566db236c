"""Forecast skill by lead time on held-out times: the multiformer against persistence and climatology,
and the calibration of its ensemble.

For fixed batches of the validation period and each lead of ``slices`` (in token time slices), the
last ``s`` time slices of every predicted field are hidden (``forecast`` strategy) and predicted in
one pass from the preceding ones (input-only forcing stays visible: it is prescribed). Scored is the
last hidden slice, the one ``s`` token time steps after the last visible step: lead = ``s`` x token
time size x the store's time step (hours in the output; with tokens of several time steps the scored
slice spans the leads just below that). Every lead is scored on the same batches and places.

Baselines, de-normalized to store units like the model:

- **persistence** repeats the last visible time step;
- **climatology** is the store's local (per grid point) monthly mean from the normalization
  statistics (``data/normalization.py``) at the target time, interpolated between mid-month values: the de-normalized 0 of a locally
  normalized field, and for a globally normalized one the local mean, which the statistics pass
  always stores too. It is *in-sample*: the statistics span the whole store, validation period
  included, so it is a slightly optimistic reference.

Scores (``model.metrics``; area-weighted once -- the sampler's ``row_weight`` -- per field and level,
and per field over its levels):
``rmse`` of the ensemble mean for all three; for the model also the fair ensemble ``crps``, the
``spread`` (square root of the mean unbiased ensemble variance), ``spread_corrected`` =
``sqrt((M + 1)/M) x spread``, which matches the RMSE of a calibrated M-member ensemble, and
``spread_skill`` = ``spread_corrected / rmse`` (Fortin et al. 2014, eq. 15).

    python -m atmorep_coupler.training.evaluate --checkpoint CKPT [--slices 1 2 3] [--batches 16] [--compile] [--out FILE]

prints (and with ``--out`` writes) JSON: ``leads`` (one entry per lead: ``slices``, ``lead_hours``,
``model``, ``persistence``, ``climatology``, ``ratio`` = model/persistence RMSE and
``ratio_climatology``), ``units`` per field, ``ensemble_size``; the top-level ``model``,
``persistence``, ``climatology`` and ``ratio`` repeat the shortest lead.
"""

from __future__ import annotations

import argparse
import json
import math

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tqdm.auto import tqdm

from atmorep_coupler.data.sampler import NeighbourhoodSampler
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.model.config import ModelConfig, StrategyConfig
from atmorep_coupler.model.masking import Masker
from atmorep_coupler.model.metrics import ScoreAccumulator, level_labels, target_rows
from atmorep_coupler.model.multiformer import Multiformer, compile_model
from atmorep_coupler.units import udunits

__all__ = ["build_parser", "evaluate_forecast", "main"]

_KINDS = ("model", "persistence", "climatology")
CLIMATOLOGY_NOTE = ("climatology: the store's local monthly mean at the target time (normalization "
                    "statistics, interpolated between mid-month values); in-sample, computed over the whole store "
                    "including the validation period")


def _lead_hours(sampler: NeighbourhoodSampler, slices: int) -> float:
    """``slices`` token time slices in hours (token time size x the store's median time step)."""
    times = sampler.store.times
    step = np.median(np.diff(times)) / np.timedelta64(1, "s") if times.size > 1 else 0.0
    return slices * sampler.config.predicted_fields[0].token_size[0] * float(step) / 3600.0


def _with_corrected_spread(scores: dict[str, float], ensemble_size: int) -> dict[str, float]:
    """Add ``<field>/spread_corrected[/<level>]`` = sqrt((M + 1)/M) x spread (module docstring)."""
    factor = math.sqrt((ensemble_size + 1) / ensemble_size)
    extra = {k.replace("/spread", "/spread_corrected", 1): factor * v for k, v in scores.items()
             if k.split("/")[1] == "spread"}
    return dict(sorted((scores | extra).items()))


def _ratio(numerator: dict[str, float], denominator: dict[str, float]) -> dict[str, float]:
    return {k: v / denominator[k] for k, v in numerator.items() if denominator.get(k)}


@torch.no_grad()
def evaluate_forecast(model: Multiformer, sampler: NeighbourhoodSampler, *, slices: int | Sequence[int] = 1,
                      batches: int = 8, device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Scores by lead (module docstring); keys like ``"temperature/rmse"`` and
    ``"temperature/rmse/500hPa"`` in store units."""
    config = model.config
    leads = sorted({int(s) for s in ([slices] if isinstance(slices, int) else slices)})
    maskers = {}
    for s in leads:
        strategy = StrategyConfig("forecast", forecast_slices=s)
        ModelConfig._validate_strategy(f"--slices {s}", strategy, config.predicted_fields)
        maskers[s] = Masker(config, strategies=(strategy,))
    M = config.ensemble_size
    levels = {f.name: level_labels(f) for f in config.predicted_fields}
    acc = {s: {"model": ScoreAccumulator(levels, M), "persistence": ScoreAccumulator(levels),
               "climatology": ScoreAccumulator(levels)} for s in leads}
    model.eval()
    with tqdm(total=batches * len(leads), desc="forecast evaluation", unit="pass", disable=not progress) as bar:
        for index in range(batches):
            batch = sampler.batch(index)
            origins = batch.origin.numpy()
            physical = {f.name: _physical(sampler, f.name, batch.tokens[f.name], origins)
                        for f in config.predicted_fields}
            meta = {k: v.to(device) for k, v in batch.meta.items()}
            for s in leads:
                masked = maskers[s](batch.tokens, sampler.seed, (sampler.stream, sampler.rank, index))
                outputs = model({k: v.to(device) for k, v in masked.items()}, meta)
                for name, out in outputs.items():
                    _score(acc[s], name, config.field(name).token_size, s, masked[name].target,
                           out.members.float().cpu(), physical[name], batch.row_weight)
                bar.update(1)
    per_lead = []
    for s in leads:
        scores = {kind: acc[s][kind].scores() for kind in _KINDS}
        scores["model"] = _with_corrected_spread(scores["model"], M)
        per_lead.append({"slices": s, "lead_hours": _lead_hours(sampler, s), **scores,
                         "ratio": _ratio(scores["model"], scores["persistence"]),
                         "ratio_climatology": _ratio(scores["model"], scores["climatology"])})
    first = per_lead[0]
    store = sampler.store
    units = {f.name: udunits(store.units(store.resolve(f.variable))) for f in config.predicted_fields}
    return {**{k: first[k] for k in (*_KINDS, "ratio")}, "leads": per_lead, "units": units, "ensemble_size": M,
            "batches": batches, "batch_size": sampler.batch_size, "notes": [CLIMATOLOGY_NOTE]}


def _physical(sampler: NeighbourhoodSampler, name: str, clean: torch.Tensor, origins: np.ndarray) -> dict:
    """Store-unit tokens of one field: the truth, the local monthly mean (climatology), and the affine
    map ``offset + scale * x`` from normalized to store units (de-normalization is affine per point)."""
    zeros = torch.zeros_like(clean)
    offset = torch.from_numpy(sampler.denormalize(name, zeros, origins)).double()
    scale = torch.from_numpy(sampler.denormalize(name, zeros + 1, origins)).double() - offset
    if sampler.config.field(name).normalization == "local":
        climatology = offset
    else:
        climatology = torch.from_numpy(sampler.denormalize(name, zeros, origins, mode="local")).double()
    truth = torch.from_numpy(sampler.denormalize(name, clean, origins)).double()
    return {"truth": truth, "climatology": climatology, "offset": offset, "scale": scale}


def _score(acc: dict[str, ScoreAccumulator], name: str, token_size: Sequence[int], slices: int, target: torch.Tensor,
           members: torch.Tensor, physical: dict, row_weight: torch.Tensor) -> None:
    """Score the last hidden slice (lead ``slices``) of one field for model, persistence and climatology."""
    index = target.nonzero()  # [N, 5] (sample, level, time, row, column), the order of the members
    T = target.shape[2]
    last = index[:, 2] == T - 1
    index, members = index[last], members[last]
    at = tuple(index.T)  # the scored tokens
    truth = physical["truth"][at]  # [N, t, y, x]
    members = physical["offset"][at].unsqueeze(1) + physical["scale"][at].unsqueeze(1) * members
    b, level, _, row, col = index.T
    persistence = physical["truth"][b, level, T - slices - 1, row, col][:, -1:].expand_as(truth)  # last visible step
    weight = target_rows(row_weight, index, token_size)
    acc["model"].update(name, members.mean(1), truth, level, weight, members)
    acc["persistence"].update(name, persistence, truth, level, weight)
    acc["climatology"].update(name, physical["climatology"][at], truth, level, weight)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    parser.add_argument("--store", help="store path, if it moved since training")
    parser.add_argument("--batches", type=int, default=8, help="held-out batches (default: %(default)s)")
    parser.add_argument("--slices", type=int, nargs="+", default=[1], metavar="S",
                        help="leads in token time slices, e.g. --slices 1 2 3 (default: 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (pays off for many batches; compiling takes minutes on CPU)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from atmorep_coupler.training.trainer import Trainer

    trainer = Trainer.from_checkpoint(args.checkpoint, store=args.store, device=args.device)
    sampler = trainer.validation_sampler
    if sampler is None:
        raise ConfigError(f"{args.checkpoint}: data.validation is not set; forecast evaluation needs held-out times")
    model = compile_model(trainer.raw_model) if args.compile else trainer.raw_model
    result = evaluate_forecast(model, sampler, slices=args.slices, batches=args.batches,
                               device=args.device, progress=not args.no_progress)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
