"""The worker-side pieces of ``training/distributed.py`` on a real 2-process gloo group (no Ray).

Two spawned processes train the tiny run (with dropout, so per-rank RNG states matter) three ways:
DDP, FSDP2, and FSDP2 restored from a gathered checkpoint. Checked against independent references:
FSDP trains the same weights as DDP; the gathered FSDP checkpoint is an ordinary trainer checkpoint
(a single process loads it and matches the DDP weights); restoring it into fresh shards continues
exactly; ``all_reduce_sum`` sums what each rank reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import load_run_config, run_config_from_yaml, run_config_to_yaml
from atmorep_coupler.training.trainer import Trainer

pytestmark = pytest.mark.slow

WORLD, STEPS, SPLIT = 2, 4, 2


def _trainer(config, rank: int, strategy: str, frozen=None) -> Trainer:
    from atmorep_coupler.training.distributed import all_reduce_sum, wrap_model

    cpu = torch.device("cpu")
    return Trainer(config, rank=rank, world_size=WORLD, wrap_model=partial(wrap_model, strategy=strategy, device=cpu),
                   reduce_metrics=partial(all_reduce_sum, device=cpu), frozen=frozen)


def _rank_main(rank: int, port: int, config_yaml: str, out: str) -> None:
    """One rank: DDP run, FSDP run with a gathered checkpoint at SPLIT, FSDP restored from it."""
    from atmorep_coupler.model.checkpoint import save_state
    from atmorep_coupler.training.distributed import (
        _rng_state, all_reduce_sum, full_state_dict, restore_state)
    from atmorep_coupler.training.trainer import CHECKPOINT_FORMAT

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    out = Path(out)
    config = run_config_from_yaml(config_yaml)
    report = {"sum": all_reduce_sum({"a": float(rank + 1), "b": 10.0 * rank}, device=torch.device("cpu"))}

    ddp = _trainer(config, rank, "ddp")
    report["ddp"] = [ddp.train_step()["loss"] for _ in range(STEPS)]
    if rank == 0:
        torch.save(ddp.raw_model.state_dict(), out / "ddp_model.pt")

    fsdp = _trainer(config, rank, "fsdp")
    report["fsdp"] = [fsdp.train_step()["loss"] for _ in range(SPLIT)]
    state, rng = full_state_dict(fsdp, "fsdp"), _rng_state(fsdp.device)
    if rank == 0:
        save_state(state, out / "fsdp_split.pt", format=CHECKPOINT_FORMAT)  # as the Ray path writes it
    report["fsdp"] += [fsdp.train_step()["loss"] for _ in range(STEPS - SPLIT)]
    final = full_state_dict(fsdp, "fsdp")
    if rank == 0:
        torch.save(final["model"], out / "fsdp_model.pt")

    dist.barrier()
    torch.manual_seed(1234)  # disturb the RNG: the restore must bring this rank's stream back
    saved = torch.load(out / "fsdp_split.pt", weights_only=True)
    restored = _trainer(config, rank, "fsdp", frozen=saved["frozen"])
    restore_state(restored, saved, "fsdp", rng)
    report["restored_step"] = restored.step
    report["restored"] = [restored.train_step()["loss"] for _ in range(STEPS - SPLIT)]
    (out / f"rank_{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tiny_store, tmp_path_factory):
    run = load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store), steps=STEPS)
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, dropout=0.1))
    out = tmp_path_factory.mktemp("two_ranks")
    mp.start_processes(_rank_main, args=(_free_port(), run_config_to_yaml(run), str(out)), nprocs=WORLD,
                       start_method="spawn")
    reports = [json.loads((out / f"rank_{r}.json").read_text()) for r in range(WORLD)]
    return out, reports


def test_all_reduce_sums_over_ranks(two_ranks):
    _, reports = two_ranks
    assert all(r["sum"] == {"a": 3.0, "b": 10.0} for r in reports)


def test_fsdp_trains_the_same_model_as_ddp(two_ranks):
    out, reports = two_ranks
    for report in reports:  # each rank's own losses on its own stream
        np.testing.assert_allclose(report["fsdp"], report["ddp"], rtol=0, atol=1e-5)
    assert reports[0]["ddp"] != reports[1]["ddp"]  # disjoint streams
    ddp = torch.load(out / "ddp_model.pt", weights_only=True)
    fsdp = torch.load(out / "fsdp_model.pt", weights_only=True)
    assert ddp.keys() == fsdp.keys()
    for name in ddp:
        # A key-norm bias adds the same q.b to every score of a query, which softmax ignores: its
        # gradient is zero up to round-off, and Adam turns that noise into lr-sized steps, so the
        # two reduction orders may part there (by ~1e-5 after 4 steps at lr 1e-3), and only there.
        atol = 1e-4 if name.endswith("k_norm.bias") else 2e-6
        torch.testing.assert_close(fsdp[name], ddp[name], rtol=0, atol=atol, msg=name)


def test_gathered_fsdp_checkpoint_is_a_plain_trainer_checkpoint(two_ranks):
    out, _ = two_ranks
    single = Trainer.from_checkpoint(out / "fsdp_split.pt")  # one process, no process group
    assert single.step == SPLIT
    state = torch.load(out / "fsdp_split.pt", weights_only=True)
    optim = single.optimizer.state_dict()
    assert sorted(optim["state"]) == list(range(len(list(single.raw_model.parameters()))))
    assert all(v.device.type == "cpu" and not hasattr(v, "placements") for v in state["model"].values())


def test_fsdp_restore_continues_exactly(two_ranks):
    _, reports = two_ranks
    for report in reports:
        assert report["restored_step"] == SPLIT
        assert report["restored"] == report["fsdp"][SPLIT:]
