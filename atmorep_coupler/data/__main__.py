"""Command line: ``python -m atmorep_coupler.data {make-default,make-paired,era5-layout,stats} ...``.

``make-default`` generates (or resumes, or reuses from the cache) the Held–Suarez default dataset
and prints the store's path as the last line of standard output. ``make-paired`` writes a fine
(T42) run and its conservative coarsening to the default grid (:mod:`.paired`) and prints both paths. ``era5-layout LAYOUT SOURCE OUT``
writes a store in the exact WeatherBench 2 or ARCO-ERA5 layout (:mod:`.era5_layouts`). ``stats STORE``
computes a store's normalization statistics and stores them with it.
"""

from __future__ import annotations

import argparse
import sys

from atmorep_coupler.errors import AtmoRepError


def _make_default(args: argparse.Namespace) -> None:
    from atmorep_coupler.data.default import DefaultDataConfig, generate

    if args.tiny:
        config = DefaultDataConfig.tiny_store(seed=args.seed, resolution=args.resolution)
    else:
        config = DefaultDataConfig(resolution=args.resolution, years=args.years, seed=args.seed)
    path = generate(config, args.out, progress=not args.quiet)
    print(path)


def _make_paired(args: argparse.Namespace) -> None:
    from atmorep_coupler.data.paired import PairedDataConfig, generate_paired

    config = PairedDataConfig(resolution=args.resolution, days=args.days, spinup_days=args.spinup_days,
                              seed=args.seed, pressure_levels_hPa=tuple(args.levels))
    fine, coarse = generate_paired(config, args.out, progress=not args.quiet)
    print(fine)
    print(coarse)


def _era5_layout(args: argparse.Namespace) -> None:
    from atmorep_coupler.data.era5_layouts import write_layout

    print(write_layout(args.source, args.out, args.layout, progress=not args.quiet))


def _stats(args: argparse.Namespace) -> None:
    from atmorep_coupler.data.statistics import compute_normalization
    from atmorep_coupler.data.store import open_store

    store = open_store(args.store, require_global=False)
    stats = compute_normalization(
        store, args.variables or None, max_chunk_bytes=args.chunk_mb * 2**20, progress=not args.quiet
    )
    print(stats.save(store))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atmorep_coupler.data", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-default", help="generate the Held-Suarez default dataset (cached)")
    make.add_argument("--out", help="store path (default: in the user cache directory)")
    make.add_argument("--years", type=float, default=2.0, help="length of the written record (default 2: train on the first year, hold out the second)")
    make.add_argument("--resolution", default="T21", choices=["T21", "T42"], help="model truncation")
    make.add_argument("--seed", type=int, default=0, help="seed of the initial perturbation")
    make.add_argument("--tiny", action="store_true", help="small store for tests (2-day spin-up, 4 days)")
    make.add_argument("--quiet", action="store_true", help="no progress bars")
    make.set_defaults(func=_make_default)
    paired = sub.add_parser("make-paired", help="a fine run and its conservative coarsening (downscaling pairs)")
    paired.add_argument("--out", help="folder for fine.zarr and coarse.zarr (default: in the user cache directory)")
    paired.add_argument("--resolution", default="T42", help="truncation of the fine run (default T42, a 64x128 grid)")
    paired.add_argument("--days", type=float, default=40.0, help="days of 3-hourly output (default 40)")
    paired.add_argument("--spinup-days", type=float, default=40.0, help="days run before the first output")
    paired.add_argument("--levels", type=float, nargs="+", default=[250.0, 500.0, 700.0, 850.0], help="pressure levels, hPa")
    paired.add_argument("--seed", type=int, default=0, help="seed of the initial perturbation")
    paired.add_argument("--quiet", action="store_true", help="no progress bars")
    paired.set_defaults(func=_make_paired)
    layout = sub.add_parser("era5-layout", help="write a store in the WeatherBench 2 or ARCO-ERA5 layout")
    layout.add_argument("layout", choices=["weatherbench2", "arco-era5"], help="the public layout to write")
    layout.add_argument("source", help="a store with the default data's variables (e.g. make-default's)")
    layout.add_argument("out", help="the store to write (must not exist)")
    layout.add_argument("--quiet", action="store_true", help="no progress bar")
    layout.set_defaults(func=_era5_layout)
    stats = sub.add_parser("stats", help="compute and store normalization statistics of a store")
    stats.add_argument("store", help="store path or fsspec URL")
    stats.add_argument("--variables", nargs="*", help="variables (default: all with a time axis)")
    stats.add_argument("--chunk-mb", type=int, default=256, help="memory bound of one time chunk")
    stats.add_argument("--quiet", action="store_true", help="no progress bar")
    stats.set_defaults(func=_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AtmoRepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
