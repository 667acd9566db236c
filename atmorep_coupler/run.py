"""Run a coupled simulation: ``python -m atmorep_coupler.run coupling_configs/NAME.yaml [--resume] [--out DIR] [--set KEY=VALUE ...]``.

Outputs (zarr, CF) and restart files go under ``--out`` (default ``runs/<run.name>``); relative input
paths in the YAML resolve against the YAML's folder. ``--resume`` continues from the latest restart
and fails when there is none; without it, ``run.restart.resume`` decides (``auto`` by default:
continue if a restart exists). ``--set KEY=VALUE`` (repeatable) replaces one value of the YAML before it
is checked: KEY is a dotted path (list items by index, e.g. ``couplings.0.period``), VALUE is read as
YAML (``--set run.end=2000-02-01T00:00:00``, ``--set components.atm.config.checkpoint=/abs/ckpt.pt``).
Give paths in VALUE as absolute paths.

A coupling YAML is code: ``kind: pkg.module:Class`` imports ``pkg.module``. Registered kinds and modules
of their packages import unasked; any other module only with ``--allow-import PACKAGE``. Outputs and
restarts stay inside ``--out``; absolute paths there need ``--allow-outside-out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atmorep_coupler.coupling.overrides import load_config
from atmorep_coupler.errors import AtmoRepError

__all__ = ["build_parser", "load_config", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="coupling YAML (see docs/coupling.md)")
    parser.add_argument("--out", type=Path, default=None, help="folder for outputs and restarts (default runs/<run.name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest restart (required to exist)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="replace one value of the YAML (dotted key, YAML value; repeatable)")
    parser.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                        help="let 'kind: MODULE.sub:Class' import MODULE (a coupling YAML is code: only registered "
                             "kinds and their packages are imported otherwise; repeatable)")
    parser.add_argument("--print-sequence", action="store_true",
                        help="print the run sequence the YAML compiles to (put, get, step, output, sync, restart; "
                             "in stages of components that may step together; docs/coupling.md) and exit without running")
    parser.add_argument("--allow-outside-out", action="store_true",
                        help="let absolute outputs[].path and run.restart.dir write outside --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from atmorep_coupler.coupling.driver import CoupledRun

    try:
        config, base = load_config(args.config, args.set)
        if args.print_sequence:
            from atmorep_coupler.coupling.sequence import compile_stages, format_sequence

            print(format_sequence(compile_stages(config)))
            return 0
        out = args.out if args.out is not None else Path("runs") / config.run.name
        with CoupledRun(config, base_dir=base, out_dir=out, origin=str(args.config),
                        resume=True if args.resume else None, progress=not args.no_progress,
                        allow_imports=args.allow_import, allow_outside_out=args.allow_outside_out) as run:
            summary = run.run()
    except AtmoRepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {args.config}: ran out of memory; check the sizes in the config (grids, ensemble members)",
              file=sys.stderr)
        return 2
    print(json.dumps({
        "simulated_days": summary.elapsed_seconds / 86400,
        "resumed_from": str(summary.resumed_from) if summary.resumed_from else None,
        "outputs": [str(p) for p in summary.outputs],
        "last_restart": str(summary.restarts[-1]) if summary.restarts else None,
        "max_conservation_error": summary.max_conservation_error,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
