"""Downscaling benchmark: fine-tune a pretrained checkpoint on the paired data and score it on held-out times.

    python -m atmorep_coupler.data make-paired                          # 40 days at T42 + coarsening (cached)
    python -m atmorep_coupler.train --config bench/downscaling_pretrain.yaml --store PAIR/coarse.zarr --out runs/pre
    python bench/downscaling.py runs/pre/checkpoints/last.pt --pair PAIR --steps 200 --out bench/downscaling_result.json

Prints (and writes) JSON: the wall time per fine-tuning step and the torch threads (the machine's load is
not known to the script: state it beside the numbers), the loss at the start and end, and per level the
RMSE of the fine-tuned, the zero-shot model and bilinear and conservative interpolation on whole global
fine fields, the ratio of the model's RMSE to each interpolation's (target <= 0.7), the spread/skill
(target 0.8-1.2), and the largest deviation of the power-spectrum ratio to the truth over total
wavenumbers 2 .. ``--truncation`` (target within 20 %; default 35: beyond it the T42 truth's power falls by three
decades under the dynamical core's spectral filter, and wavenumbers above 42 hold no truth).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def summarise(result: dict, truncation: int) -> dict:
    systems = result["scores"]["systems"]
    model = np.asarray(systems["fine_tuned"]["rmse"])
    summary = {"levels": result["scores"]["levels"], "held_out_times": result["scores"]["times"],
               "rmse": {name: s["rmse"] for name, s in systems.items()},
               "ratio_to_bilinear": (model / np.asarray(systems["bilinear"]["rmse"])).tolist(),
               "ratio_to_conservative": (model / np.asarray(systems["conservative"]["rmse"])).tolist(),
               "spread_skill": {name: systems[name]["spread_skill"] for name in ("fine_tuned", "zero_shot")}}
    # l = 1 (hemispheric asymmetry) holds almost no power in this climate, and from l ~ 38 on the truth's power
    # falls by three decades (the dynamical core's spectral filter), so ratios there measure interpolation noise
    band = slice(2, truncation + 1)
    summary[f"spectrum_max_deviation_l2_to_{truncation}"] = {
        name: np.abs(np.asarray(s["spectrum_ratio"])[:, band] - 1).max(-1).tolist() for name, s in systems.items()}
    picks = sorted({l for l in (5, 10, 21, 31, truncation, 42) if l < np.asarray(result["scores"]["truth_spectrum"]).shape[-1]})
    summary["spectrum_ratio_at"] = {f"l={l}": {name: np.asarray(s["spectrum_ratio"])[:, l].tolist()
                                                for name, s in systems.items()} for l in picks}
    return summary


def _rescore(args: argparse.Namespace) -> int:
    """Re-score saved fine-tuned weights (and the zero-shot model, rebuilt from the same seed) on the held-out times."""
    import datetime as dt

    import yaml

    from atmorep_coupler.model.checkpoint import FINETUNED_FORMAT, WEIGHTS_FORMAT, load_state
    from atmorep_coupler.config import from_dict
    from atmorep_coupler.downstream.evaluate import score_downscaling
    from atmorep_coupler.downstream.model import DownscalingConfig, downscaling_model
    from atmorep_coupler.downstream.pairs import DownscalingPairs
    from atmorep_coupler.downstream.run import load_pretrained
    from atmorep_coupler.model.config import ModelConfig
    from atmorep_coupler.model.multiformer import Multiformer

    old = json.loads((args.rescore / "downscaling.json").read_text())
    saved = load_state(args.rescore / "finetuned.pt", [FINETUNED_FORMAT, WEIGHTS_FORMAT])
    if saved["format"] == FINETUNED_FORMAT:  # the fine-tuned checkpoint a coupled run loads
        model_dict, std = yaml.safe_load(saved["config"])["model"], saved["downscaling"][0]["departure_std"]
    else:  # weights written before it (model config and departure scale beside them)
        model_dict, std = yaml.safe_load(saved["model_config"]), saved["downscaling"]["departure_std"]
    tuned = Multiformer(from_dict(ModelConfig, model_dict))
    tuned.load_state_dict(saved["model"])
    tuned.eval()
    base, state = load_pretrained(old["checkpoint"])
    weights = state["model"]
    c = old["config"]
    config = DownscalingConfig(**{**c, "levels": tuple(c["levels"]), "coupled_fields": tuple(c["coupled_fields"])})
    zero_shot = downscaling_model(base, weights, config).eval()
    held_out = dt.datetime.fromisoformat(old["held_out_from"])
    pairs = DownscalingPairs(old["coarse"], old["fine"], base, tuned.config.fields[-1], batch_size=1, start=held_out,
                             std=np.asarray(std))
    old["scores"] = score_downscaling({"fine_tuned": tuned, "zero_shot": zero_shot}, pairs, held_out)
    (args.rescore / "downscaling.json").write_text(json.dumps(old, indent=1))
    report = {"benchmark": "downscaling", "device": "cpu", "fine_tuning": old["fine_tuning"],
              "parameters": old["parameters"], "held_out_from": old["held_out_from"],
              **summarise(old, args.truncation)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="pretrained trainer checkpoint")
    parser.add_argument("--pair", type=Path, help="folder with fine.zarr and coarse.zarr")
    parser.add_argument("--summarise", type=Path, help="only summarise an earlier run's downscaling.json")
    parser.add_argument("--rescore", type=Path, metavar="WORK", help="score the weights an earlier run left in WORK "
                        "(finetuned.pt, downscaling.json) again with this code, keeping its fine-tuning record")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--levels", type=float, nargs="+", default=[500.0, 850.0])
    parser.add_argument("--truncation", type=int, default=35, help="largest total wavenumber compared (default 35)")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_downscaling"), help="weights and full scores")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.summarise:
        result = json.loads(args.summarise.read_text())
        print(json.dumps({"fine_tuning": result["fine_tuning"], **summarise(result, args.truncation)}, indent=1))
        return 0
    if args.rescore:
        return _rescore(args)
    if not args.checkpoint or not args.pair:
        parser.error("a checkpoint and --pair are needed (or --summarise FILE)")
    import torch

    from atmorep_coupler.downstream.model import DownscalingConfig
    from atmorep_coupler.downstream.run import run_downscaling

    config = DownscalingConfig(levels=tuple(args.levels), steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    result = run_downscaling(args.checkpoint, args.pair / "coarse.zarr", args.pair / "fine.zarr", config, args.work)
    report = {"benchmark": "downscaling", "device": "cpu", "torch_threads": torch.get_num_threads(),
              "fine_tuning": result["fine_tuning"], "parameters": result["parameters"],
              "held_out_from": result["held_out_from"], **summarise(result, args.truncation)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
