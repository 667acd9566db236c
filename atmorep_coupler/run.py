"""Run a coupled simulation: ``python -m atmorep_coupler.run coupling_configs/NAME.yaml [--resume] [--out DIR]``.

Outputs (zarr, CF) and restart files go under ``--out`` (default ``runs/<run.name>``); relative input
paths in the YAML resolve against the YAML's folder. ``--resume`` continues from the latest restart
and fails when there is none; without it, ``run.restart.resume`` decides (``auto`` by default:
continue if a restart exists).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atmorep_coupler.errors import AtmoRepError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="coupling YAML (see docs/coupling.md)")
    parser.add_argument("--out", type=Path, default=None, help="folder for outputs and restarts (default runs/<run.name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest restart (required to exist)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from atmorep_coupler.coupling.driver import CoupledRun

    try:
        with CoupledRun.from_file(args.config, out_dir=args.out, resume=True if args.resume else None,
                                  progress=not args.no_progress) as run:
            summary = run.run()
    except AtmoRepError as exc:
        print(f"error: {exc}", file=sys.stderr)
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
