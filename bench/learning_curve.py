"""Training-loss curves of a run config over several seeds, and a statistical comparison of two sets.

    python bench/learning_curve.py run --config default --store STORE --steps 200 --seeds 0 1 2 --out a.json
    python bench/learning_curve.py run ... --set model.relative_position_bias=false --out b.json
    python bench/learning_curve.py compare a.json b.json [--plot curves.png]

``run`` trains in this process (``Trainer.train_step``, no Ray, no validation or checkpoints) and writes
the loss of every step per seed. It trains whatever ``atmorep_coupler`` is importable, so
``PYTHONPATH=/path/to/an/older/checkout`` records the curve of another version of the code with the
same seeds (sampler, masking and initial weights all follow the seed).

``compare`` prints JSON: the largest relative difference between the curves of the same seed over the
first steps (``equal_to_round_off_steps``: how many steps agree to 1e-4), and, over windows of steps,
the mean loss of each set with the spread over seeds and Welch's t statistic of the window means
(|t| above ~3 with a few seeds means the curves differ by more than the seeds do).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from pathlib import Path


def _override(run_dict: dict, assignment: str) -> None:
    import yaml

    key, value = assignment.split("=", 1)
    *path, last = key.split(".")
    node = run_dict
    for part in path:
        node = node[part]
    node[last] = yaml.safe_load(value)


def run_curves(args) -> dict:
    import torch
    import yaml

    from tqdm.auto import tqdm

    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    source = Path(args.config) if Path(args.config).is_file() else config_path(args.config)
    base = yaml.safe_load(source.read_text())
    for assignment in args.set:
        _override(base, assignment)
    curves = {}
    for seed in args.seeds:
        run_dict = dict(base, seed=seed, steps=args.steps)
        run = load_run_config(run_dict).with_overrides(store=args.store)
        trainer = Trainer(run)
        start = time.perf_counter()
        losses = [trainer.train_step()["loss"] for _ in tqdm(range(args.steps), desc=f"seed {seed}", leave=False)]
        curves[str(seed)] = {"loss": losses, "seconds": round(time.perf_counter() - start, 1)}
    import atmorep_coupler

    return {"config": str(source), "overrides": args.set, "steps": args.steps, "code": atmorep_coupler.__file__,
            "curves": curves}


def compare(a: dict, b: dict, window: int) -> dict:
    seeds = sorted(set(a["curves"]) & set(b["curves"]), key=int)
    steps = min(a["steps"], b["steps"])
    same = []
    for seed in seeds:
        x, y = a["curves"][seed]["loss"], b["curves"][seed]["loss"]
        rel = [abs(p - q) / abs(p) for p, q in zip(x[:steps], y[:steps])]
        agree = next((k for k, r in enumerate(rel) if r > 1e-4), steps)
        same.append({"seed": int(seed), "equal_to_round_off_steps": agree, "max_relative_difference_first_10": max(rel[:10])})
    windows = []
    for lo in range(0, steps, window):
        hi = min(lo + window, steps)
        means = [[statistics.fmean(s["curves"][seed]["loss"][lo:hi]) for seed in seeds] for s in (a, b)]
        mean_a, mean_b = (statistics.fmean(m) for m in means)
        sd_a, sd_b = (statistics.stdev(m) if len(m) > 1 else 0.0 for m in means)
        se = math.sqrt((sd_a**2 + sd_b**2) / len(seeds)) if len(seeds) > 1 else 0.0
        windows.append({"steps": [lo, hi], "a": round(mean_a, 4), "b": round(mean_b, 4),
                        "spread_a": round(sd_a, 4), "spread_b": round(sd_b, 4),
                        "welch_t": round((mean_b - mean_a) / se, 2) if se > 0 else None})
    return {"a": {k: a[k] for k in ("config", "overrides", "code")}, "b": {k: b[k] for k in ("config", "overrides", "code")},
            "seeds": [int(s) for s in seeds], "per_seed": same, "windows": windows}


def plot(curve_sets: list[tuple[str, dict]], path: Path, smooth: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, data), colour in zip(curve_sets, ("C0", "C1", "C2", "C3")):
        for k, curve in enumerate(data["curves"].values()):
            loss = np.convolve(curve["loss"], np.ones(smooth) / smooth, mode="valid")
            ax.plot(np.arange(loss.size) + smooth, loss, color=colour, alpha=0.7, lw=1, label=label if k == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({smooth}-step mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and record the loss curves")
    run.add_argument("--config", default="default")
    run.add_argument("--store", required=True)
    run.add_argument("--steps", type=int, default=200)
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.dropout=0.1")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--out", type=Path, required=True)
    cmp = sub.add_parser("compare", help="compare two recorded sets")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--window", type=int, default=40)
    cmp.add_argument("--plot", type=Path, help="also draw both sets (and any --also) into this PNG")
    cmp.add_argument("--also", type=Path, nargs="*", default=[], help="more recorded sets for the plot")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.command == "run":
        result = run_curves(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result))
        print(json.dumps({k: v for k, v in result.items() if k != "curves"}
                         | {"seconds": {s: c["seconds"] for s, c in result["curves"].items()}}))
        return
    sets = [(p.stem, json.loads(p.read_text())) for p in (args.a, args.b, *args.also)]
    print(json.dumps(compare(sets[0][1], sets[1][1], args.window), indent=2))
    if args.plot:
        plot(sets, args.plot)


if __name__ == "__main__":
    main()
