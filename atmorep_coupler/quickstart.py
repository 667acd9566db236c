"""The main job on the embedded default data: ``python -m atmorep_coupler.quickstart``.

Runs the whole chain through the same command lines a user would type, one stage after another,
so the quickstart can never drift from the documented commands:

1. ``python -m atmorep_coupler.data make-default`` — the Held–Suarez default dataset (cached);
2. ``python -m atmorep_coupler.train --num-workers 2`` — a small multiformer trained with Ray Train, then
   its second stage on its own forecasts (``--config default_rollout --init-from`` the first stage's
   checkpoint; ``--rollout-steps 0`` leaves it out); every later stage uses the second stage's checkpoint;
3. ``python -m atmorep_coupler.training.evaluate --slices 1 2 3`` — forecast skill by lead time against
   persistence and climatology, and the ensemble's spread, skill and CRPS;
4. ``python -m atmorep_coupler.run coupling_configs/default.yaml`` and ``counterfactual.yaml`` — the
   coupled climate runs (multiformer two-way coupled to the coarse dinosaur model, + forcings, 30
   simulated days of the held-out year; the counterfactual under +4 K) and ``coarse_alone.yaml`` (the
   coarse model alone from the same initial state); then ``python -m atmorep_coupler.analysis.climate``
   — the run's climate against the truth's and the coarse model alone's — and
   ``python -m atmorep_coupler.analysis.counterfactual`` — the warming response, with its standard
   error, against the dinosaur truth model forced the same way;
5. ``python -m atmorep_coupler.verify`` — the scorecard: 5-day forecasts from 4 start dates of the
   held-out year, coupled two ways as ``default.yaml`` couples the multiformer and one way (its
   couplings back removed), against persistence, the coarse model alone and an out-of-sample
   climatology (the truth's training year; with ``--tiny`` an independent realisation of the same
   climate, ``make-default --seed 1``). The perfect-conditioning upper bound is left out here
   (:data:`FULL_VERIFICATION`: a third pass of network calls); the verify command alone adds it by default;
6. ``python -m atmorep_coupler.analysis.report`` — ``report/report.md`` with PNG figures: training
   curves, skill by lead, spread/skill, the scorecard, maps of the coupled run against the truth run,
   its climate, the response.

``--tiny`` runs the same chain small (a few minutes on 2 cores): the ``--tiny`` dataset (4 days), the
default config's fields with a tiny network (:func:`tiny_training_config`, written to
``<out>/tiny_default.yaml``; its rollout stage :func:`tiny_rollout_config`), one simulated day of coupled
runs (:func:`tiny_coupled_overrides`) and a verification of two 12-hour forecasts
(:data:`TINY_VERIFICATION`). Nothing it shows is skilful; it checks the chain.

Each stage's output goes under ``--out`` (default ``outputs/quickstart``); re-running with the same
``--out`` continues the training run where it stopped (Ray Train resumes a run of the same name) and
continues coupled runs from their restarts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["build_parser", "coupled_overrides", "main", "tiny_coupled_overrides", "tiny_rollout_config",
           "tiny_training_config"]

#: The tiny coupled runs: one day from 2 January 2000 (after the tiny store's first day, so its
#: context window is in the store) with 6-hourly output.
TINY_START = dt.datetime(2000, 1, 2)
TINY_HOURS = 24
#: Blocks of the response's standard error (batch means): 10 days (3 blocks of the 30-day runs); 12 h tiny.
FULL_BLOCK_DAYS, TINY_BLOCK_DAYS = 10.0, 0.5
FULL_EVALUATION = {"slices": [1, 2, 3], "batches": 16}
TINY_EVALUATION = {"slices": [1, 2, 3], "batches": 4}
#: The seed of the independent realisation whose climatology is the out-of-sample reference.
CLIMATOLOGY_SEED = 1
#: ``python -m atmorep_coupler.verify`` arguments of the full quickstart: 4 start dates of 5-day forecasts (two-way
#: and one-way hybrids, two passes of network calls; 18 min on the loaded 2-core machine) without the
#: perfect-conditioning upper bound (a third pass). The verify command's own defaults: 16 start dates, 10 days.
FULL_VERIFICATION = ["--count", "4", "--hours", "120", "--no-perfect"]
#: ``python -m atmorep_coupler.verify`` arguments of ``--tiny``: two 12-hour forecasts inside the tiny store,
#: after its training period, with the classical model's short tiny spin-up.
TINY_VERIFICATION = ["--starts", "2000-01-03T06:00:00", "2000-01-03T12:00:00", "--hours", "12",
                     "--set", "components.classical.config.spinup_days=10",
                     "--set", "components.classical.config.initialization.days=1"]


def tiny_training_config(store: str | Path, *, steps: int = 160) -> dict:
    """The default training config's field set (4 predicted, 4 coarse, 2 forcings) with a tiny network,
    on a ``--tiny`` store (4 days: train on the first two, validate on the last day and a half).
    A mapping for :func:`atmorep_coupler.training.config.load_run_config`, or to write as YAML."""
    from atmorep_coupler.train import config_path

    config = yaml.safe_load(config_path("default").read_text())
    for field in config["model"]["fields"]:
        field["embed_dim"] = 8
    config["model"].update(encoder_layers=1, decoder_layers=1, heads=2, ensemble_size=4)
    config["data"] = {"store": str(store), "batch_size": 2, "samples_per_window": 1,
                      "train": {"start": "2000-01-01T00:00:00", "end": "2000-01-03T00:00:00"},
                      "validation": {"start": "2000-01-03T12:00:00", "end": "2000-01-04T21:00:00"}}
    config["schedule"]["warmup_steps"] = max(1, steps // 10)
    config["validation"] = {"every_steps": max(1, steps // 4), "batches": 2}
    config["checkpoint"] = {"every_steps": steps, "keep": 1}
    config["logging"] = {"every_steps": max(1, steps // 20), "tensorboard": True}
    config["steps"] = steps
    return config


def tiny_rollout_config(store: str | Path, *, steps: int = 20) -> dict:
    """:func:`tiny_training_config` as the second stage (``configs/default_rollout.yaml``'s strategies),
    rolled out up to 2 steps: the tiny store's two training days leave room for no more."""
    from atmorep_coupler.train import config_path

    config = tiny_training_config(store, steps=steps)
    config["model"]["strategies"] = yaml.safe_load(config_path("default_rollout").read_text())["model"]["strategies"]
    config["rollout"] = {"max_steps": 2}
    return config


def coupled_overrides(checkpoint: str | Path, store: str | Path) -> list[str]:
    """``--set`` assignments that point coupling_configs/default.yaml at a checkpoint and truth store (the
    multiformer's initial condition and the state the classical model's spin-up ends nudged toward)."""
    return [f"components.atmorep.config.checkpoint={checkpoint}",
            f"components.atmorep.config.initial_condition={store}",
            f"components.classical.config.initialization.store={store}"]


def tiny_coupled_overrides(start: dt.datetime = TINY_START, hours: int = TINY_HOURS) -> list[str]:
    """``--set`` assignments that shrink coupling_configs/default.yaml to ``hours`` inside a ``--tiny``
    store: 6-hourly output and restarts, and a 10-day spin-up of the classical model whose last day is
    nudged toward the store (the tiny store begins a day before ``start``)."""
    return [f"run.start={start.isoformat()}", f"run.end={(start + dt.timedelta(hours=hours)).isoformat()}",
            "run.restart.every=PT6H", "components.classical.config.spinup_days=10",
            "components.classical.config.initialization.days=1",
            "outputs.1.interval=PT6H", "outputs.2.interval=PT6H", "outputs.2.reduction=instant"]


class _Stages:
    """Runs ``python -m ...`` stages with live output and keeps their wall times."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, title: str, args: list[str], *, capture: bool = False) -> str:
        """Run one stage; raise SystemExit naming the stage if it fails."""
        print(f"\n==> {title}\n    $ python {' '.join(args)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE if capture else None, text=True,
                                check=False)
        if result.returncode != 0:
            raise SystemExit(f"quickstart: stage '{title}' failed (exit {result.returncode}); see the output above")
        self.seconds[title] = time.perf_counter() - start
        print(f"    done in {self.seconds[title]:.0f} s", flush=True)
        return result.stdout or ""


def _latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``trainer.pt`` Ray Train registered under ``run_dir`` (None before the first)."""
    def step(path: Path) -> int:
        suffix = path.parent.name.rsplit("_", 1)[-1]
        return int(suffix) if suffix.isdigit() else -1

    candidates = sorted(run_dir.glob("checkpoint_*/trainer.pt"), key=step)
    return candidates[-1] if candidates else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/quickstart", help="output folder (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true",
                        help="the same chain, small: tiny dataset, network and runs (a few minutes on 2 cores)")
    parser.add_argument("--years", type=float, default=2.0,
                        help="length of the default dataset (default: 2; training uses the first year)")
    parser.add_argument("--steps", type=int, help="training steps (default: 600; 160 with --tiny)")
    parser.add_argument("--rollout-steps", type=int, help="steps of the second training stage, on the network's "
                        "own forecasts (default: 300; 20 with --tiny; 0: none)")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (default: %(default)s)")
    parser.add_argument("--store", help="use this ERA5-layout store instead of the default dataset "
                                        "(with --tiny: a store made by make-default --tiny)")
    parser.add_argument("--climatology-store", help="store of the verification's out-of-sample climatology (default: "
                                                    "the verification's own, the truth over the training year; with "
                                                    "--tiny, whose training period is two days: the tiny dataset made "
                                                    "again with --seed 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages = _Stages()
    steps = args.steps or (160 if args.tiny else 600)

    if args.store:
        store = str(Path(args.store).resolve()) if "://" not in args.store else args.store
    else:
        size = ["--tiny"] if args.tiny else ["--years", f"{args.years:g}"]
        printed = stages.run("default dataset (dinosaur Held-Suarez, T21, 3-hourly; cached after the first run)",
                             ["-m", "atmorep_coupler.data", "make-default", *size], capture=True)
        store = printed.strip().splitlines()[-1]
        print(f"    store: {store}")
    climatology = args.climatology_store
    if climatology is None and not args.store and args.tiny:  # the full data's training year is out of sample
        printed = stages.run("an independent realisation of the same climate (seed 1), for the out-of-sample "
                             "climatology; cached after the first run",
                             ["-m", "atmorep_coupler.data", "make-default", "--tiny", "--seed", str(CLIMATOLOGY_SEED)],
                             capture=True)
        climatology = printed.strip().splitlines()[-1]

    def train(title: str, name: str, config: str | Path, steps: int, *extra: str) -> Path:
        """One Ray Train stage as run ``name`` under ``out/runs``; its newest checkpoint."""
        stages.run(title, ["-m", "atmorep_coupler.train", "--config", str(config), "--store", store,
                           "--steps", str(steps), *extra, "--num-workers", str(args.workers), "--run-name", name,
                           "--storage", str(out / "runs")])
        found = _latest_checkpoint(out / "runs" / name)
        if found is None:
            raise SystemExit(f"quickstart: training finished but no checkpoint was found under {out / 'runs' / name}")
        return found

    if args.tiny:
        config = out / "tiny_default.yaml"
        config.write_text(yaml.safe_dump(tiny_training_config(store, steps=steps), sort_keys=False))
    else:
        config = "default"
    run_dir = out / "runs" / "quickstart"
    checkpoint = train(f"train the {'tiny ' if args.tiny else ''}default multiformer with Ray Train "
                       f"({args.workers} workers, {steps} steps)", "quickstart", config, steps)
    rollout_steps = args.rollout_steps if args.rollout_steps is not None else (20 if args.tiny else 300)
    if rollout_steps:
        if args.tiny:
            stage = out / "tiny_default_rollout.yaml"
            stage.write_text(yaml.safe_dump(tiny_rollout_config(store, steps=rollout_steps), sort_keys=False))
        else:
            stage = "default_rollout"
        checkpoint = train(f"second training stage: forecasts from the network's own forecasts "
                           f"({rollout_steps} steps)", "quickstart_rollout", stage, rollout_steps,
                           "--init-from", str(checkpoint))

    evaluation = TINY_EVALUATION if args.tiny else FULL_EVALUATION
    forecast = out / "forecast.json"
    stages.run("forecast skill by lead time against persistence and climatology on held-out times",
               ["-m", "atmorep_coupler.training.evaluate", "--checkpoint", str(checkpoint), "--store", store,
                "--slices", *map(str, evaluation["slices"]), "--batches", str(evaluation["batches"]),
                "--out", str(forecast)], capture=True)

    configs = Path(__file__).resolve().parent.parent / "coupling_configs"
    sets = coupled_overrides(checkpoint, store) + (tiny_coupled_overrides() if args.tiny else [])
    period = f"{TINY_HOURS} simulated hours" if args.tiny else "30 simulated days"
    runs = {}
    for name, what in (("default", "coupled run"), ("counterfactual", "coupled run under +4 K surface warming")):
        runs[name] = out / "coupled" / name
        stages.run(f"{what} ({name}.yaml, {period})",
                   ["-m", "atmorep_coupler.run", str(configs / f"{name}.yaml"), "--out", str(runs[name]),
                    *[arg for assignment in sets for arg in ("--set", assignment)]])
    coarse_sets = [f"components.classical.config.initialization.store={store}"] + (
        tiny_coupled_overrides()[:5] if args.tiny else [])
    runs["coarse-alone"] = out / "coupled" / "coarse-alone"
    stages.run(f"the coarse model alone from the same initial state (coarse_alone.yaml, {period})",
               ["-m", "atmorep_coupler.run", str(configs / "coarse_alone.yaml"), "--out", str(runs["coarse-alone"]),
                *[arg for assignment in coarse_sets for arg in ("--set", assignment)]])
    climate = out / "climate"
    stages.run("climate of the coupled run against the truth and the coarse model alone",
               ["-m", "atmorep_coupler.analysis.climate", "--run", str(runs["default"]), "--truth", store,
                "--coarse", str(runs["coarse-alone"]), "--out", str(climate)], capture=True)
    response = out / "response"
    stages.run("counterfactual response against the dinosaur truth model forced the same way",
               ["-m", "atmorep_coupler.analysis.counterfactual", "--control", str(runs["default"]),
                "--counterfactual", str(runs["counterfactual"]), "--truth", store, "--out", str(response),
                "--block-days", str(TINY_BLOCK_DAYS if args.tiny else FULL_BLOCK_DAYS)])

    verification = out / "verification"
    stages.run("scorecard: many start dates, every baseline (WeatherBench 2 scores)",
               ["-m", "atmorep_coupler.verify", str(checkpoint), "--store", store, "--out", str(verification),
                *(["--climatology-store", climatology] if climatology else []),
                *(TINY_VERIFICATION if args.tiny else FULL_VERIFICATION)])
    scorecard = verification / "scorecard.json"

    timings = out / "timings.json"
    timings.write_text(json.dumps({"mode": "tiny" if args.tiny else "full", "steps": steps,
                                   "rollout_steps": rollout_steps, "workers": args.workers,
                                   "stages_s": stages.seconds,
                                   "total_s": time.perf_counter() - started}, indent=1) + "\n")
    report = out / "report"
    stages.run("report: Markdown and PNG figures",
               ["-m", "atmorep_coupler.analysis.report", "--run", str(run_dir), "--forecast", str(forecast),
                "--scorecard", str(scorecard), "--coupled", str(runs["default"]), "--truth", store,
                "--climate", str(climate),
                "--response", str(response),
                "--timings", str(timings), "--out", str(report)])

    print(f"\nquickstart finished in {time.perf_counter() - started:.0f} s. Outputs:")
    print(f"  dataset            {store}")
    print(f"  training run       {run_dir}  (CSV and TensorBoard logs under logs/, checkpoints)")
    print(f"  final checkpoint   {checkpoint}")
    print(f"  forecast skill     {forecast}")
    print(f"  coupled runs       {runs['default']}, {runs['counterfactual']}  (zarr outputs, restarts)")
    print(f"  coarse model alone {runs['coarse-alone']}")
    print(f"  climate            {climate}")
    print(f"  warming response   {response}")
    print(f"  scorecard          {scorecard}  (and scorecard_<field>.png beside it)")
    print(f"  stage wall times   {timings}")
    ratios = json.loads(forecast.read_text()).get("ratio", {})
    for key, value in sorted(ratios.items()):
        if key.count("/") == 1:
            print(f"    {key:<32} model/persistence RMSE = {value:.2f} (shortest lead)")
    print(f"\n  REPORT             {report / 'report.md'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
