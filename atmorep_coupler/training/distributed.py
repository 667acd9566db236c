"""Data-parallel training with Ray Train (V2): the same :class:`Trainer`, one per Ray worker.

``python -m atmorep_coupler.train --config CFG --num-workers N`` lands in :func:`train_distributed`:

- **Ray** (:func:`init_ray`): under ``ray job submit`` (``RAY_ADDRESS`` set) or with ``--address`` the
  driver attaches to that cluster; run directly it starts a private in-process instance
  (``address="local"``: a plain ``ray.init()`` would silently join any ``ray start`` cluster on the
  machine); if Ray is already initialised (a test fixture, a notebook) it is used as it is.
- **Pre-flight** (:func:`check_resources`): Ray waits forever for workers it cannot place, so a request
  that no set of alive nodes can hold fails at once with the numbers and what to change.
- **Listeners**: without a cluster address every socket of the run is on loopback: Ray's (the package
  sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) and the torch.distributed rendezvous, which Ray Train
  would bind to all interfaces (``training/loopback.py``).
- **Workers** (:func:`train_worker`): each builds a ``Trainer`` with its rank, world size and device;
  the rank selects a disjoint, deterministic batch stream (``SeedSequence(seed, (stream, rank,
  index))`` in the sampler and the masker). The model is wrapped in DDP (gloo on CPU, NCCL on GPU) or
  sharded with FSDP2 (``fully_shard`` per encoder/decoder layer) for models that do not fit one GPU;
  the Trainer already runs bf16 autocast on CUDA. The loop is the single-process one
  (``training/loop.py``, its cadence included); training metrics are averaged over ranks where it computes
  them; rank 0 writes the CSV/TensorBoard logs and drives the progress bar.
- **Checkpoints**: every ``checkpoint.every_steps`` and at the end, every rank calls
  ``ray.train.report`` (it is a barrier: equal call counts on all ranks) with a directory that Ray
  merges into ``<storage>/<run>/checkpoint_<step>/``: rank 0 contributes ``trainer.pt`` (the Trainer's
  usual checkpoint, so ``Trainer.from_checkpoint`` and the component read it unchanged; with FSDP the
  shards are gathered first), every rank its own RNG state. ``CheckpointConfig(num_to_keep=keep)``.
- **Resume**: ``RunConfig(name=<run>, storage_path=<absolute>)``; re-running with the same name and
  storage hands the latest registered checkpoint to every worker (``ray.train.get_checkpoint``), and
  ``FailureConfig(max_failures)`` does the same after a worker dies. The model, optimiser, schedule,
  step (= sampler position) and per-rank RNG states come back, so the continuation is exact.

Outputs of a run, all under ``<storage>/<run>/``: ``checkpoint_<step>/`` (``trainer.pt``,
``rng_rank<r>.pt``), ``logs/train.csv`` (+ ``validation.csv``, ``tensorboard/``), ``workers/rank_<r>.json``
(pid, host, device, step, the step it resumed from), ``result.json`` (last metrics) and Ray's own
``checkpoint_manager_snapshot.json``.

Ray is imported inside the functions that need it: importing ``ray.train`` takes seconds, and the
model wrapping, state gathering and reductions also run on a plain ``torch.distributed`` group.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import socket
import tempfile
import time

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from atmorep_coupler.config import Validated, to_dict
from atmorep_coupler.errors import AtmoRepError, ConfigError, package_error
from atmorep_coupler.model.checkpoint import RNG_FORMAT, load_state, load_trainer_state, save_state
from atmorep_coupler.training.config import RunConfig, run_config_from_yaml, run_config_to_yaml
from atmorep_coupler.training.loop import MetricsLogger, train_loop
from atmorep_coupler.training.trainer import CHECKPOINT_FORMAT, Trainer

__all__ = [
    "DistributedOptions",
    "train_distributed",
    "init_ray",
    "check_resources",
    "train_worker",
    "wrap_model",
    "full_state_dict",
    "restore_state",
    "all_reduce_sum",
    "TRAINER_FILE",
]

log = logging.getLogger(__name__)

TRAINER_FILE = "trainer.pt"
RESULT_FILE = "result.json"
RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # written by Ray Train when it registers a checkpoint

Strategy = Literal["ddp", "fsdp"]


@dataclass(frozen=True)
class DistributedOptions(Validated):
    """How to run: the Ray workers, the run's name and where it lives."""

    num_workers: int
    run_name: str
    storage: Path  # absolute; on several nodes a file system every node mounts
    cpus_per_worker: float = 1.0
    gpus_per_worker: int = 0  # 0 (CPU, gloo) or 1 (one GPU per rank, NCCL)
    strategy: Strategy = "ddp"
    max_failures: int = 3  # worker-group restarts from the last checkpoint; -1 = unlimited
    address: str | None = None  # Ray cluster; None: RAY_ADDRESS, else a private in-process instance
    progress: bool = True

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ConfigError(f"--num-workers {self.num_workers}: must be >= 1 for Ray Train "
                              "(0 trains in this process without Ray)")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker {self.cpus_per_worker}: must be > 0 (fractions like 0.5 are fine)")
        if self.gpus_per_worker not in (0, 1):
            raise ConfigError(
                f"--gpus-per-worker {self.gpus_per_worker}: must be 0 (CPU) or 1; each rank trains on one "
                "device (NCCL cannot share a GPU between ranks), so use more workers for more GPUs"
            )
        if self.strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"--strategy {self.strategy!r}: must be 'ddp' or 'fsdp'")
        if not self.run_name or "/" in self.run_name or self.run_name in (".", ".."):
            raise ConfigError(f"--run-name {self.run_name!r}: must be a plain folder name")
        if not self.storage.is_absolute():
            raise ConfigError(
                f"--storage {str(self.storage)!r}: must be an absolute path (a Ray job runs in a temporary "
                "copy of its working directory, and other nodes have other working directories)"
            )
        if self.max_failures < -1:
            raise ConfigError(f"--max-failures {self.max_failures}: must be >= 0, or -1 for unlimited")

    @property
    def run_dir(self) -> Path:
        return self.storage / self.run_name


# ------------------------------------------------------------------------------------------ driver
def init_ray(address: str | None = None) -> bool:
    """Connect to Ray; return whether this call did (so the caller shuts it down again).

    Already initialised: nothing. ``address`` or ``RAY_ADDRESS`` (set by Ray Jobs for the job's
    driver): attach to that cluster. Otherwise a private in-process instance (``address="local"``)
    on this machine's CPUs and GPUs, listening on loopback (the package sets
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before Ray is imported).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=True)
    return True


def _workers_fitting(node: Mapping[str, float], cpus: float, gpus: int) -> int:
    """How many workers of ``cpus`` CPUs and ``gpus`` GPUs one node's resources hold."""
    fits = math.floor(node.get("CPU", 0.0) / cpus + 1e-9)
    if gpus:
        fits = min(fits, math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
    return fits


def check_resources(num_workers: int, cpus_per_worker: float, gpus_per_worker: int) -> None:
    """Fail fast when the alive nodes cannot hold the workers (Ray would wait for them forever).

    Counts per node, as Ray places each worker's bundle on one node. Resources that other jobs hold
    right now are not subtracted: those are released eventually, missing nodes never are.
    """
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fitting = sum(_workers_fitting(n, cpus_per_worker, gpus_per_worker) for n in nodes)
    if fitting >= num_workers:
        return
    total = ray.cluster_resources()
    per_node = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes)
    raise ConfigError(
        f"Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs on {len(nodes)} "
        f"node(s) ({per_node}), which hold {fitting} worker(s) of {cpus_per_worker:g} CPU and "
        f"{gpus_per_worker} GPU each, but --num-workers is {num_workers}; Ray would wait for the rest "
        "forever. Lower --num-workers, use a fractional --cpus-per-worker (e.g. 0.5), or add nodes."
    )


def _check_config(config: RunConfig | None, options: DistributedOptions) -> None:
    if config is None or config.data.validation is None or not config.validation.every_steps:
        return
    if config.validation.batches < options.num_workers:
        raise ConfigError(
            f"validation.batches: {config.validation.batches} fixed batches cannot be split over "
            f"{options.num_workers} workers; give every worker at least one (batches >= --num-workers)"
        )


def _absolute_store(config: RunConfig | None, store: str | None) -> tuple[RunConfig | None, str | None]:
    """Resolve local store paths against the driver's working directory: workers have other ones."""
    def resolve(path: str) -> str:
        return path if "://" in path else str(Path(path).expanduser().resolve())

    store = resolve(store) if store else None
    if config is not None:
        config = config.with_overrides(store=resolve(config.data.store))
    return config, store


def _warn_if_resuming(run_dir: Path) -> None:
    if not (run_dir / RAY_SNAPSHOT_FILE).exists():
        return
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    log.warning(
        "run %r in %s already holds training state (checkpoints %s); continuing from its latest "
        "registered checkpoint. Pass another --run-name to start a new run.",
        run_dir.name, run_dir.parent, checkpoints or "none yet",
    )


def train_distributed(config: RunConfig | None, options: DistributedOptions, *,
                      init_checkpoint: str | Path | None = None, steps: int | None = None,
                      store: str | None = None) -> dict:
    """Train on ``options.num_workers`` Ray workers; return the final metrics and checkpoint path.

    ``config``: the requested run (None with ``init_checkpoint``, whose config is used). A run that
    already has checkpoints under ``options.run_dir`` continues from its latest one, keeping its
    model and optimiser settings; ``steps`` and the store come from this call. ``init_checkpoint``:
    a ``trainer.pt`` that seeds a *new* run. ``steps``/``store`` override the checkpoint's.
    """
    if config is None and init_checkpoint is None:
        raise ConfigError("give a run config or a checkpoint to start from")
    _check_config(config, options)
    config, store = _absolute_store(config, store)
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    started = init_ray(options.address)
    try:
        check_resources(options.num_workers, options.cpus_per_worker, options.gpus_per_worker)
        options.run_dir.mkdir(parents=True, exist_ok=True)
        _warn_if_resuming(options.run_dir)
        spec = {
            "config": run_config_to_yaml(config) if config is not None else None,
            "init_checkpoint": str(Path(init_checkpoint).resolve()) if init_checkpoint else None,
            "steps": steps,
            "store": store,
            "strategy": options.strategy,
            "run_dir": str(options.run_dir),
            "progress": options.progress,
        }
        keep = (config.checkpoint.keep if config is not None else 2) or 1
        resources = {"CPU": options.cpus_per_worker}
        if options.gpus_per_worker:
            resources["GPU"] = options.gpus_per_worker
        backend = "nccl" if options.gpus_per_worker else "gloo"
        if options.address or os.environ.get("RAY_ADDRESS"):  # a cluster: other nodes must reach rank 0
            torch_config = TorchConfig(backend=backend)
        else:  # this machine only: every listener on loopback
            from atmorep_coupler.training.loopback import LoopbackTorchConfig

            torch_config = LoopbackTorchConfig(backend=backend)
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=spec,
            torch_config=torch_config,
            scaling_config=ray.train.ScalingConfig(num_workers=options.num_workers,
                                                   use_gpu=bool(options.gpus_per_worker),
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=options.run_name,
                storage_path=str(options.storage),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep),
                failure_config=ray.train.FailureConfig(max_failures=options.max_failures),
            ),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            failures = list(getattr(exc, "worker_failures", {}).values())
            cause = next((e for e in map(package_error, failures) if e is not None), None)
            if cause is not None:  # a bad config, store or checkpoint: restarting would not help
                raise cause from None
            reason = " ".join(str(exc).split())
            raise AtmoRepError(
                f"training run {options.run_name!r} failed (after up to {options.max_failures} restarts "
                f"from checkpoints): {reason[:800]}. Its checkpoints stay in {options.run_dir}; re-run the same "
                "command to continue from the latest one."
            ) from exc
    finally:
        if started:
            ray.shutdown()
    summary_path = options.run_dir / RESULT_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "train": summary.get("metrics", result.metrics or {}),
        "step": summary.get("step"),
        "run_dir": str(options.run_dir),
        "checkpoint": str(Path(result.checkpoint.path) / TRAINER_FILE) if result.checkpoint else None,
    }


# ------------------------------------------------------------------------------------------ workers
def wrap_model(model: torch.nn.Module, *, strategy: Strategy, device: torch.device) -> torch.nn.Module:
    """DDP, or FSDP2 with one shard unit per encoder/decoder layer plus the rest at the root.

    FSDP2 keeps the module and parameter names (parameters become ``DTensor`` shards of their
    original shapes), so the Trainer's optimiser groups (matrices vs. vectors) stay right.
    """
    if strategy == "ddp":
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from atmorep_coupler.model.multiformer import DecoderLayer, EncoderLayer

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for module in model.modules():
        if isinstance(module, (EncoderLayer, DecoderLayer)):
            fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def all_reduce_sum(values: Mapping[str, float], *, device: torch.device) -> dict[str, float]:
    """Sum ``values`` over all ranks (float64). Every rank must pass the same keys."""
    keys = sorted(values)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, keys)
    if any(k != keys for k in gathered):
        raise RuntimeError(f"ranks reduce different metrics: {gathered}")
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))


def _mean_over_ranks(metrics: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Training metrics averaged over ranks; ``samples`` summed (the global batch)."""
    world = dist.get_world_size()
    sums = all_reduce_sum(metrics, device=device)
    return {k: v if k == "samples" else v / world for k, v in sums.items()}


def _optimizer_names(trainer: Trainer) -> list[str]:
    """Parameter names in the optimiser's order (the integer keys of ``optimizer.state_dict()``)."""
    names = {id(p): n for n, p in trainer.raw_model.named_parameters()}
    return [names[id(p)] for group in trainer.optimizer.param_groups for p in group["params"]]


def _renumber_optimizer_state(state: Mapping, mapping: Mapping) -> dict:
    """Rename the parameter keys of an optimiser state dict (names <-> indices)."""
    groups = [dict(g, params=[mapping[p] for p in g["params"]]) for g in state["param_groups"]]
    return {"state": {mapping[k]: v for k, v in state["state"].items()}, "param_groups": groups}


def full_state_dict(trainer: Trainer, strategy: Strategy) -> dict | None:
    """The Trainer's checkpoint dict on rank 0 (None elsewhere); with FSDP the model and optimiser
    shards are gathered first (a collective: every rank calls this), so the file is the same as a
    single-process checkpoint."""
    state = trainer.state_dict() if dist.get_rank() == 0 else None
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model, optim = get_state_dict(trainer.raw_model, trainer.optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if dist.get_rank() != 0:
            return None
        index = {name: i for i, name in enumerate(_optimizer_names(trainer))}
        state.update(model=model, optimizer=_renumber_optimizer_state(optim, index))
    return state


def restore_state(trainer: Trainer, state: Mapping, strategy: Strategy, rng: Mapping | None = None) -> None:
    """Load a (full) Trainer checkpoint into this rank's trainer, then this rank's RNG state.

    Without a saved RNG state for this rank (a run that changed its world size, or a new run
    seeded from a checkpoint) the rank keeps its freshly seeded stream instead of rank 0's.
    """
    fresh = torch.get_rng_state()
    if strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        names = dict(enumerate(_optimizer_names(trainer)))
        set_state_dict(trainer.raw_model, trainer.optimizer, model_state_dict=state["model"],
                       optim_state_dict=_renumber_optimizer_state(state["optimizer"], names),
                       options=StateDictOptions(full_state_dict=True))
        # the shards are in place; the Trainer restores the rest (schedule, step, checks) as usual
        state = {**state, "model": trainer.raw_model.state_dict(), "optimizer": trainer.optimizer.state_dict()}
    trainer.load_state_dict(state)
    torch.set_rng_state(rng["torch"] if rng is not None else fresh)
    if rng is not None and rng.get("cuda") is not None and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], trainer.device)


def _rng_state(device: torch.device) -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank:04d}.pt"


def _load_rng(path: Path) -> dict:
    return load_state(path, [RNG_FORMAT], what="RNG state")


def _starting_point(spec: Mapping, rank: int) -> tuple[dict | None, dict | None, str | None]:
    """(trainer state, this rank's RNG state, source) from Ray's latest checkpoint of this run, else
    from ``init_checkpoint``, else nothing."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            folder = Path(folder)
            rng_path = folder / _rng_file(rank)
            return (load_trainer_state(folder / TRAINER_FILE), _load_rng(rng_path) if rng_path.exists() else None,
                    checkpoint.path)
    if spec["init_checkpoint"]:
        path = Path(spec["init_checkpoint"])
        return load_trainer_state(path / TRAINER_FILE if path.is_dir() else path), None, str(path)
    return None, None, None


def _run_config(spec: Mapping, state: Mapping | None, source: str | None, rank: int) -> RunConfig:
    """The requested config for a new run; the checkpoint's (with this call's steps and store) when
    continuing, with a warning if the request differs in anything else."""
    requested = run_config_from_yaml(spec["config"], origin="run config") if spec["config"] else None
    if state is None:
        return requested
    saved = run_config_from_yaml(state["config"], origin=f"{source}: config")
    if requested is None:
        return saved.with_overrides(steps=spec["steps"], store=spec["store"])
    config = saved.with_overrides(steps=requested.steps, store=requested.data.store)
    if rank == 0 and to_dict(config) != to_dict(requested):
        changed = sorted(k for k, v in to_dict(requested).items() if to_dict(config)[k] != v)
        log.warning("continuing from %s with its own settings; the given config differs in %s, which "
                    "is ignored (only steps and data.store apply). Start a new run to change them.",
                    source, changed)
    return config


class _WorkerStatus:
    """``workers/rank_<r>.json``: where this rank runs and how far it got (for people and tests)."""

    def __init__(self, run_dir: Path, rank: int, device: torch.device, resumed_from: int):
        self.path = run_dir / "workers" / f"rank_{rank}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.info = {"rank": rank, "pid": os.getpid(), "host": socket.gethostname(), "device": str(device),
                     "resumed_from": resumed_from}

    def write(self, step: int, checkpoint: str | None = None) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info | {"step": step, "checkpoint": checkpoint, "time": time.time()}))
        os.replace(tmp, self.path)


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows after ``step`` (written by an attempt that died after its last checkpoint), so a
    resumed run's log holds every step once."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    if len(kept) != len(rows):
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)


def _report(trainer: Trainer, metrics: Mapping[str, float], strategy: Strategy) -> str:
    """Checkpoint this step through Ray (all ranks, equally often): rank 0's ``trainer.pt`` plus
    every rank's RNG state, merged by Ray into ``checkpoint_<step>``."""
    import ray.train

    rank, name = dist.get_rank(), f"checkpoint_{trainer.step:08d}"
    state = full_state_dict(trainer, strategy)
    with tempfile.TemporaryDirectory(prefix="atmorep_ckpt_") as tmp:
        if state is not None:
            save_state(state, Path(tmp) / TRAINER_FILE, format=CHECKPOINT_FORMAT)
        save_state(_rng_state(trainer.device), Path(tmp) / _rng_file(rank), format=RNG_FORMAT)
        # Ray logs every report in full; the per-level scores stay in the CSV/TensorBoard logs.
        summary = {k: v for k, v in metrics.items() if not k.endswith("hPa")}
        ray.train.report({**summary, "step": trainer.step}, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=name)
    return name


def train_worker(spec: dict) -> None:
    """The per-worker loop that Ray Train runs on every rank (see the module docstring)."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    strategy, run_dir = spec["strategy"], Path(spec["run_dir"])
    state, rng, source = _starting_point(spec, rank)
    config = _run_config(spec, state, source, rank)
    trainer = Trainer(config, rank=rank, world_size=world, device=device,
                      wrap_model=partial(wrap_model, strategy=strategy, device=device),
                      reduce_metrics=partial(all_reduce_sum, device=device),
                      frozen=list(state["frozen"]) if state is not None else None)
    if state is not None:
        restore_state(trainer, state, strategy, rng)
        if rank == 0:
            print(f"[atmorep] rank 0: continuing from {source} at step {trainer.step}", flush=True)
    _train(trainer, strategy, run_dir, progress=spec["progress"])


def _train(trainer: Trainer, strategy: Strategy, run_dir: Path, *, progress: bool) -> None:
    """The shared loop (``training/loop.py``) with this rank's hooks; rank 0 logs under ``run_dir/logs``."""
    start = trainer.step
    logger = bar = None
    if trainer.rank == 0:
        for kind in ("train", "validation"):
            _truncate_csv(run_dir / "logs" / f"{kind}.csv", start)
        logger = MetricsLogger(run_dir / "logs", trainer.config.logging.tensorboard)
        if progress:
            from ray.experimental.tqdm_ray import tqdm

            bar = tqdm(total=trainer.config.steps, desc="training", unit="step")
            bar.n = start
    train_loop(trainer, _RayReports(trainer, strategy, run_dir), end=trainer.config.steps, logger=logger, bar=bar)


class _RayReports:
    """:class:`~atmorep_coupler.training.loop.LoopHooks` of a Ray Train rank: metrics averaged over ranks,
    checkpoints through ``ray.train.report`` (:func:`_report`), the worker's status file, ``result.json``."""

    def __init__(self, trainer: Trainer, strategy: Strategy, run_dir: Path) -> None:
        self.trainer, self.strategy, self.run_dir = trainer, strategy, run_dir
        self.start = trainer.step
        self.status = _WorkerStatus(run_dir, trainer.rank, trainer.device, resumed_from=self.start)
        self.status.write(self.start)

    def reduce(self, metrics: dict[str, float]) -> dict[str, float]:
        return _mean_over_ranks(metrics, self.trainer.device)

    def checkpoint(self, step: int, metrics: Mapping[str, float]) -> None:
        self.status.write(step, _report(self.trainer, metrics, self.strategy))

    def finish(self, metrics: Mapping[str, float], stepped: bool) -> None:
        trainer = self.trainer
        if stepped:  # the last step's checkpoint; a run resumed at its end has it already
            self.checkpoint(trainer.step, metrics)
        if trainer.rank == 0 and metrics:
            summary = {"step": trainer.step, "world_size": trainer.world_size, "resumed_from": self.start,
                       "metrics": dict(metrics)}
            (self.run_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
