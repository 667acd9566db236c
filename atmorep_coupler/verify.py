"""Verify a trained multiformer the way WeatherBench 2 does: ``python -m atmorep_coupler.verify CHECKPOINT --store TRUTH``.

Forecasts from many start dates (default 16, over the held-out times after the checkpoint's training
and validation periods) out to ``--hours`` (default 240 h = 10 days), made by the multiformer
component's global step (tiling and blending included), all start dates batched into shared network
calls: coupled to the coarse classical model and forcings exactly as the coupling YAML (default
``coupling_configs/default.yaml``) couples them, and with perfect (truth-coarsened) conditioning as
an upper bound. Beside them on the same start dates and grid: persistence, an out-of-sample
climatology (``--climatology-store``/``--climatology-period``; default the truth store over the
training period; the quickstart uses an independent realisation of the default data's climate), the
in-sample climatology (labelled) and the coarse classical model alone.
Scores on whole global fields with WeatherBench 2's definitions (area weights once; RMSE, bias, ACC;
fair CRPS and spread/skill for ensembles, ``--members``) per field, level and lead.

Writes ``scorecard.json`` and ``scorecard_<field>.png`` (RMSE and ACC by lead, one line per system)
into ``--out`` and prints the RMSE and ACC tables at 3 h, 6 h, 12 h, 1 d, 2 d, 3 d, 5 d and 10 d.

The network calls dominate the wall time. Unless set, ``OMP_WAIT_POLICY`` is ``PASSIVE`` here: OpenMP
threads that spin while they wait made each call 2-2.5x slower on the shared 2-core machine (measured
with torch's 2 threads against 1), and sleeping threads cost nothing measurable when the machine is idle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from atmorep_coupler.errors import AtmoRepError

__all__ = ["build_parser", "main"]

DEFAULT_COUPLING = Path(__file__).resolve().parent.parent / "coupling_configs" / "default.yaml"


def _date(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r} (e.g. 2000-06-01T00:00:00)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="trainer checkpoint (trainer.pt)")
    parser.add_argument("--store", required=True, type=Path, help="the truth store (initial conditions and truth)")
    parser.add_argument("--out", type=Path, default=Path("outputs/verify"), help="output folder (default: %(default)s)")
    parser.add_argument("--coupling", type=Path, default=DEFAULT_COUPLING,
                        help="coupling YAML whose coarse model and forcings condition the multiformer "
                             "(default: coupling_configs/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one value of the coupling YAML, as in python -m atmorep_coupler.run")
    parser.add_argument("--starts", type=_date, nargs="+", metavar="DATE", help="start dates (default: --count dates "
                        "evenly spread over the held-out times)")
    parser.add_argument("--count", type=int, default=16, help="number of start dates (default: %(default)s)")
    parser.add_argument("--hours", type=float, default=240.0, help="forecast length in hours (default: %(default)s)")
    parser.add_argument("--members", type=int, help="ensemble members per start date (default: the coupling YAML's)")
    parser.add_argument("--climatology-store", type=Path, help="store of the out-of-sample climatology, e.g. an "
                        "independent realisation of the same climate (default: the truth store)")
    parser.add_argument("--climatology-period", type=_date, nargs=2, metavar=("FIRST", "LAST"),
                        help="period of the out-of-sample climatology (default: the checkpoint's training period in "
                             "the truth store, the whole --climatology-store otherwise)")
    parser.add_argument("--climatology-window", type=float, default=61.0,
                        help="days of the day-of-year smoothing window (default: %(default)s)")
    parser.add_argument("--no-coupled", action="store_true", help="skip the coupled forecasts and the coarse model")
    parser.add_argument("--no-perfect", action="store_true", help="skip the perfect-conditioning upper bound")
    parser.add_argument("--no-in-sample", action="store_true", help="skip the in-sample climatology")
    parser.add_argument("--tile-batch-size", type=int, default=256,
                        help="tiles (of all start dates) per network call (default: %(default)s)")
    parser.add_argument("--component", help="id of the multiformer in the coupling YAML (default: the one of kind atmorep)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP, i.e. on the next import
    from atmorep_coupler.verification.pipeline import VerifySettings, verify
    from atmorep_coupler.verification.plots import plot_scorecard

    settings = VerifySettings(
        checkpoint=args.checkpoint, store=args.store, coupling=args.coupling, overrides=tuple(args.set),
        starts=tuple(args.starts or ()), count=args.count, hours=args.hours, members=args.members,
        climatology_store=args.climatology_store,
        climatology_period=tuple(args.climatology_period) if args.climatology_period else None,
        climatology_window_days=args.climatology_window, coupled=not args.no_coupled, perfect=not args.no_perfect,
        in_sample=not args.no_in_sample, tile_batch_size=args.tile_batch_size, component=args.component,
    )
    try:
        card = verify(settings, progress=not args.no_progress)
    except AtmoRepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = card.save(args.out / "scorecard.json")
    plots = plot_scorecard(card, args.out)
    for metric in ("rmse", "acc"):
        print(f"\n{metric.upper()} by lead ({len(card.starts)} start dates)\n")
        print("\n".join(card.table(metric)))
    print(f"\nwall time: {card.info['wall_time_s']}")
    print(f"scorecard: {path}")
    for plot in plots:
        print(f"plot:      {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
