"""Fine-tune a trained multiformer for downscaling: ``python -m atmorep_coupler.finetune CHECKPOINT --pair FOLDER``.

Adds a fine-resolution output field (``<variable>_fine``, ``--refinement`` times finer, tokens covering the
same cube, its own embedding, coupling heads, decoder and ensemble tail) to the pretrained model, freezes
the pretrained network (``--no-freeze`` to train it too), and trains the new field on paired data
(``python -m atmorep_coupler.data make-paired``: ``fine.zarr`` and its coarsening ``coarse.zarr``) to
predict the fine field from the coarse neighbourhood, its statistical loss on the ensemble. The record's
last ``--held-out-days`` are never trained on; on them it scores the zero-shot model (fine field fully
masked, new tail untrained), the fine-tuned one, and bilinear and conservative interpolation of the
coarse field on whole global fine fields (RMSE, CRPS, spread/skill, power spectrum by total wavenumber).
Writes ``finetuned.pt`` (weights, model config, the fine field's departure scale) and ``downscaling.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from atmorep_coupler.errors import AtmoRepError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="pretrained trainer checkpoint (trainer.pt)")
    parser.add_argument("--pair", type=Path, required=True, help="folder with fine.zarr and coarse.zarr (make-paired)")
    parser.add_argument("--out", type=Path, default=Path("outputs/finetune"), help="output folder (default: %(default)s)")
    parser.add_argument("--variable", default="temperature", help="variable to downscale (default: %(default)s)")
    parser.add_argument("--levels", type=float, nargs="+", default=[500.0, 850.0], help="its levels, hPa")
    parser.add_argument("--refinement", type=int, default=2, help="fine grid / coarse grid (default: %(default)s)")
    parser.add_argument("--embedding", choices=("linear", "transformer"), default="transformer",
                        help="token embedding of the fine field (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="neighbourhoods per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    parser.add_argument("--held-out-days", type=float, default=10.0, help="last days scored, never trained on")
    parser.add_argument("--eval-windows", type=int, help="score at most this many held-out windows (default: all)")
    parser.add_argument("--no-freeze", action="store_true", help="train the pretrained network too")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new field and the sampler")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from atmorep_coupler.downstream.model import DownscalingConfig
    from atmorep_coupler.downstream.run import run_downscaling

    try:
        config = DownscalingConfig(variable=args.variable, levels=tuple(args.levels), refinement=args.refinement,
                                   embedding=args.embedding, freeze=not args.no_freeze, steps=args.steps,
                                   batch_size=args.batch_size, lr=args.lr, held_out_days=args.held_out_days,
                                   seed=args.seed)
        result = run_downscaling(args.checkpoint, args.pair / "coarse.zarr", args.pair / "fine.zarr", config, args.out,
                                 eval_windows=args.eval_windows, progress=not args.quiet)
    except AtmoRepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    systems = result["scores"]["systems"]
    levels = result["scores"]["levels"]
    print(f"{'system':<14}" + "".join(f"{'RMSE ' + format(p, 'g'):>12}" for p in levels) + f"{'spread/skill':>14}")
    for name, s in systems.items():
        ss = s.get("spread_skill", [float("nan")])
        print(f"{name:<14}" + "".join(f"{v:>12.4g}" for v in s["rmse"]) + f"{min(ss):>7.2f}-{max(ss):.2f}")
    print(f"wrote {args.out / 'finetuned.pt'} and {args.out / 'downscaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
