"""Train the multiformer: ``python -m atmorep_coupler.train --config CONFIG.yaml [--steps N] [--out DIR]``.

Single process here (CPU, or one GPU with ``--device cuda``); the loop lives in
:class:`atmorep_coupler.training.trainer.Trainer`. ``--resume CHECKPOINT`` continues a run exactly
where it stopped (config, optimiser, schedule, data stream and RNG state come from the checkpoint).
``--init-from CHECKPOINT`` starts every field from a trained checkpoint (a second training stage, e.g.
``--config default_rollout`` after ``--config default``). ``--evaluate-forecast N`` scores N held-out
batches against persistence after training. Packaged configs: ``--config tiny``, ``--config default``,
``--config default_rollout``, ``--config reference_u_2024``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from atmorep_coupler.errors import AtmoRepError, ConfigError
from atmorep_coupler.training.config import RunConfig, load_run_config
from atmorep_coupler.training.trainer import Trainer

__all__ = ["main", "train", "config_path"]


def config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a packaged config (``atmorep_coupler/configs/<name>.yaml``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return Path(str(resources.files("atmorep_coupler") / "configs" / f"{name_or_path}.yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atmorep_coupler.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="run YAML, or a packaged config name")
    source.add_argument("--resume", help="trainer checkpoint to continue from")
    parser.add_argument("--steps", type=int, help="train until this step (overrides the config's steps)")
    parser.add_argument("--out", default="runs/atmorep", help="logs and checkpoints (default: %(default)s)")
    parser.add_argument("--store", help="store path or URL (overrides data.store)")
    parser.add_argument("--init-from", metavar="CHECKPOINT",
                        help="start every field from this trainer checkpoint (replaces the config's init_from)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--evaluate-forecast", type=int, default=0, metavar="BATCHES",
                        help="after training, score this many held-out batches against persistence")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("distributed training with Ray Train (docs/training.md)")
    ray.add_argument("--num-workers", type=int, default=0,
                     help="Ray Train workers (DDP ranks); 0 = this process, no Ray (default: %(default)s)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0,
                     help="CPUs reserved per worker; fractions allowed (default: %(default)s)")
    ray.add_argument("--gpus-per-worker", type=int, default=0, choices=(0, 1),
                     help="GPUs per worker (default: %(default)s)")
    ray.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp",
                     help="ddp: replicate the model; fsdp: shard it over the ranks (default: %(default)s)")
    ray.add_argument("--run-name", help="run folder under --storage; re-running a name resumes it "
                                        "(default: the config's file name)")
    ray.add_argument("--storage", help="absolute folder of the run folders (default: ./runs; "
                                       "on a cluster, storage every node mounts)")
    ray.add_argument("--max-failures", type=int, default=3,
                     help="restarts from the last checkpoint after a worker dies (default: %(default)s)")
    ray.add_argument("--address", help="Ray cluster to use (default: RAY_ADDRESS, else a private one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: 0 when training finished; 2 with one ``error:`` line on stderr for a project
    error (a config, store or checkpoint problem), as ``run`` and ``data`` do."""
    try:
        train(argv)
    except AtmoRepError as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
    return 0


def _message(exc: AtmoRepError) -> str:
    """The error's own message; one re-raised from a DataLoader worker carries the worker's traceback,
    whose last line is the original message."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.partition(": ")[2] or last
    return text


def train(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and train; returns the metrics (and the forecast scores) or raises the project error."""
    args = build_parser().parse_args(argv)
    if args.resume and args.init_from:
        raise ConfigError("--init-from starts a new run from a checkpoint's weights; --resume continues a run: "
                          "give one of them")
    if args.num_workers:
        return _main_distributed(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        trainer = Trainer.from_checkpoint(args.resume, store=args.store, steps=args.steps, device=args.device,
                                          log_dir=args.out)
    else:
        trainer = Trainer(_config(args), device=args.device, log_dir=args.out)
    if args.evaluate_forecast and trainer.validation_sampler is None:
        raise ConfigError("--evaluate-forecast needs data.validation (held-out times) in the config")
    result = {"train": trainer.fit(progress=not args.no_progress)}
    if args.evaluate_forecast:
        from atmorep_coupler.training.evaluate import evaluate_forecast

        result["forecast"] = evaluate_forecast(trainer.raw_model, trainer.validation_sampler,
                                               batches=args.evaluate_forecast, device=args.device,
                                               progress=not args.no_progress)
        (Path(args.out) / "forecast.json").write_text(json.dumps(result["forecast"], indent=2, sort_keys=True))
        print(json.dumps(result["forecast"]["ratio"], indent=2, sort_keys=True))
    return result


def _config(args: argparse.Namespace) -> RunConfig:
    """The run config of ``--config`` with the command line's overrides."""
    if args.init_from and not Path(args.init_from).is_file():
        raise ConfigError(f"--init-from {args.init_from}: no such checkpoint file")
    return load_run_config(config_path(args.config)).with_overrides(steps=args.steps, store=args.store,
                                                                   init_from=args.init_from)


def _main_distributed(args: argparse.Namespace) -> dict:
    """``--num-workers >= 1``: the same run on Ray Train workers (``training/distributed.py``)."""
    from atmorep_coupler.training.distributed import DistributedOptions, train_distributed

    if args.evaluate_forecast:
        raise ConfigError("--evaluate-forecast runs in one process: evaluate the run's final checkpoint "
                          "afterwards with --resume CHECKPOINT --evaluate-forecast N (without --num-workers)")
    storage = Path(args.storage or "runs").expanduser()
    if (args.address or os.environ.get("RAY_ADDRESS")) and not storage.is_absolute():
        raise ConfigError(f"--storage {args.storage or '(default ./runs)'}: give an absolute path on a Ray "
                          "cluster (a relative one would land in a Ray job's temporary working directory)")
    options = DistributedOptions(
        num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        strategy=args.strategy, max_failures=args.max_failures, address=args.address,
        run_name=args.run_name or Path(args.config or args.resume).stem,
        storage=storage.resolve(),
        progress=not args.no_progress,
    )
    config = _config(args) if args.config else None
    result = train_distributed(config, options, init_checkpoint=args.resume, steps=args.steps, store=args.store)
    print(json.dumps(result, indent=2, sort_keys=True))
    return result


if __name__ == "__main__":
    sys.exit(main())
