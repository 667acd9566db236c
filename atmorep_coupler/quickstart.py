"""The main job on the embedded default data: ``python -m atmorep_coupler.quickstart``.

Runs the whole chain through the same command lines a user would type, one stage after another,
so the quickstart can never drift from the documented commands:

1. ``python -m atmorep_coupler.data make-default`` — the Held–Suarez default dataset (cached);
2. ``python -m atmorep_coupler.train --num-workers 2`` — a small multiformer trained with Ray Train;
3. ``python -m atmorep_coupler.training.evaluate`` — forecast skill against persistence;
4. ``python -m atmorep_coupler.run coupling_configs/default.yaml`` and ``counterfactual.yaml`` — the
   coupled climate runs (multiformer + coarse dinosaur model + forcings, 30 simulated days; the
   counterfactual under +4 K), then ``python -m atmorep_coupler.analysis.plots`` and
   ``python -m atmorep_coupler.analysis.counterfactual`` — maps, time series and zonal means against
   the truth run, and the warming response against the dinosaur truth model forced the same way.

Each stage's output goes under ``--out`` (default ``outputs/quickstart``); a stage whose result is
already there is skipped, so an interrupted quickstart resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _run(title: str, args: list[str], *, capture: bool = False) -> str:
    """Run ``python -m ...`` with live output; raise SystemExit naming the stage if it fails."""
    print(f"\n==> {title}\n    $ python {' '.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], stdout=subprocess.PIPE if capture else None, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"quickstart: stage '{title}' failed (exit {result.returncode}); see the output above")
    print(f"    done in {time.perf_counter() - start:.0f} s", flush=True)
    return result.stdout or ""


def _latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``trainer.pt`` Ray Train registered under ``run_dir`` (None before the first)."""
    def step(path: Path) -> int:
        suffix = path.parent.name.rsplit("_", 1)[-1]
        return int(suffix) if suffix.isdigit() else -1

    candidates = sorted(run_dir.glob("checkpoint_*/trainer.pt"), key=step)
    return candidates[-1] if candidates else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/quickstart", help="output folder (default: %(default)s)")
    parser.add_argument("--years", type=float, default=1.0, help="length of the default dataset (default: 1)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (default: %(default)s)")
    parser.add_argument("--store", help="use this ERA5-layout store instead of the default dataset")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    if args.store:
        store = args.store
    else:
        printed = _run("default dataset (dinosaur Held-Suarez, T21, 3-hourly; cached after the first run)",
                       ["-m", "atmorep_coupler.data", "make-default", "--years", f"{args.years:g}"], capture=True)
        store = printed.strip().splitlines()[-1]
        print(f"    store: {store}")

    run_dir = out / "runs" / "quickstart"
    _run(f"train the default multiformer with Ray Train ({args.workers} workers, {args.steps} steps)",
         ["-m", "atmorep_coupler.train", "--config", "default", "--store", store, "--steps", str(args.steps),
          "--num-workers", str(args.workers), "--run-name", "quickstart", "--storage", str(out / "runs")])
    checkpoint = _latest_checkpoint(run_dir)
    if checkpoint is None:
        raise SystemExit(f"quickstart: training finished but no checkpoint was found under {run_dir}")

    printed = _run("forecast skill against persistence on held-out times",
                   ["-m", "atmorep_coupler.training.evaluate", "--checkpoint", str(checkpoint),
                    "--store", store, "--batches", "16"], capture=True)
    forecast = out / "forecast.json"
    forecast.write_text(printed)

    configs = Path(__file__).resolve().parent.parent / "coupling_configs"
    paths = [f"components.atmorep.config.checkpoint={checkpoint}", f"components.atmorep.config.initial_condition={store}"]
    runs = {}
    for name, what in (("default", "coupled run"), ("counterfactual", "coupled run under +4 K surface warming")):
        runs[name] = out / "coupled" / name
        _run(f"{what} ({name}.yaml, 30 simulated days)",
             ["-m", "atmorep_coupler.run", str(configs / f"{name}.yaml"), "--out", str(runs[name]),
              *[arg for assignment in paths for arg in ("--set", assignment)]])
    plots = out / "plots"
    _run("plots of the coupled run against the truth run",
         ["-m", "atmorep_coupler.analysis.plots", str(runs["default"]), "--truth", store, "--out", str(plots)])
    _run("counterfactual response against the dinosaur truth model forced the same way",
         ["-m", "atmorep_coupler.analysis.counterfactual", "--control", str(runs["default"]),
          "--counterfactual", str(runs["counterfactual"]), "--truth", store, "--out", str(out / "response")])

    print("\nquickstart finished. Outputs:")
    print(f"  dataset            {store}")
    print(f"  training run       {run_dir}  (CSV and TensorBoard logs, checkpoints)")
    print(f"  final checkpoint   {checkpoint}")
    print(f"  forecast skill     {forecast}")
    print(f"  coupled runs       {runs['default']}, {runs['counterfactual']}  (zarr outputs, restarts)")
    print(f"  plots              {plots}")
    print(f"  warming response   {out / 'response'}")
    ratios = json.loads(printed).get("ratio", {}) if printed.strip().startswith("{") else {}
    for key, value in sorted(ratios.items()):
        if key.count("/") == 1:
            print(f"    {key:<32} model/persistence RMSE = {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
