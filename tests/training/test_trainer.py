"""Trainer: exact resume, checkpoint format, logs, schedule, plug-and-play through the config, CLI."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
import yaml
import zarr

from atmorep_coupler.errors import CheckpointError, ConfigError
from atmorep_coupler.model.multiformer import Multiformer
from atmorep_coupler.train import config_path, train
from atmorep_coupler.training.config import InitFromConfig, load_run_config, run_config_from_yaml
from atmorep_coupler.training.trainer import Trainer, WarmupDecay

from .conftest import with_model


def test_packaged_configs_are_valid():
    for name in ("tiny", "default", "reference_u_2024"):
        run = load_run_config(config_path(name))
        assert run.model.predicted_fields
    ref = load_run_config(config_path("reference_u_2024")).model
    (u,) = ref.fields
    assert (u.num_tokens, u.token_size, u.embed_dim, len(u.levels)) == ((12, 3, 6), (3, 18, 18), 1024, 5)
    assert (ref.encoder_layers, ref.decoder_layers, ref.heads, ref.ensemble_size) == (6, 6, 16, 16)
    tiny = load_run_config(config_path("tiny")).model
    assert sum(p.numel() for p in Multiformer(tiny).parameters()) < 1_000_000


def test_warmup_then_cosine_decay_to_floor():
    f = WarmupDecay(warmup=4, total=14, decay="cosine", floor=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(9) == pytest.approx(0.55) and f(14) == pytest.approx(0.1)
    assert f(100) == pytest.approx(0.1)
    assert WarmupDecay(0, 10, "linear", 0.0)(5) == pytest.approx(0.5)


def test_resume_continues_bit_for_bit(tiny_run, tmp_path):
    run = with_model(tiny_run, dropout=0.1)  # dropout makes the RNG state matter
    straight = Trainer(run)
    losses = [straight.train_step()["loss"] for _ in range(4)]
    first = Trainer(run)
    assert [first.train_step()["loss"] for _ in range(2)] == losses[:2]
    first.save_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step == 2
    assert [resumed.train_step()["loss"] for _ in range(2)] == losses[2:]
    for (name, a), b in zip(straight.raw_model.state_dict().items(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b), name
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


def test_resume_with_more_steps_extends_the_schedule(tiny_run, tmp_path):
    """The learning rate after resuming with ``steps=40`` follows the 40-step schedule, not the saved one."""
    short = dataclasses.replace(tiny_run, steps=10)
    trainer = Trainer(short)
    for _ in range(6):
        trainer.train_step()
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    sched, peak = short.schedule, short.optimizer.lr
    longer = WarmupDecay(sched.warmup_steps, 40, sched.decay, sched.min_lr_ratio)
    old = WarmupDecay(sched.warmup_steps, 10, sched.decay, sched.min_lr_ratio)
    assert abs(longer(6) - old(6)) > 0.05  # the two horizons give clearly different rates here
    resumed = Trainer.from_checkpoint(path, steps=40)
    assert resumed.config.steps == 40 and resumed.scheduler.lr_lambdas[0].total == 40
    assert [resumed.train_step()["lr"] for _ in range(3)] == pytest.approx([peak * longer(k) for k in (6, 7, 8)],
                                                                           rel=1e-12)
    same = Trainer.from_checkpoint(path)  # no override: the saved horizon, exactly
    assert same.train_step()["lr"] == trainer.train_step()["lr"] == pytest.approx(peak * old(6), rel=1e-12)


def test_checkpoint_loads_with_weights_only(tiny_run, tmp_path):
    trainer = Trainer(tiny_run)
    trainer.train_step()
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    state = torch.load(path, weights_only=True)
    assert state["step"] == 1 and state["sampler"]["next_index"] == 1
    assert run_config_from_yaml(state["config"]) == tiny_run
    assert state["normalization"]["store"] == tiny_run.data.store and len(state["normalization"]["fingerprint"]) == 64
    assert isinstance(state["rng"]["torch"], torch.Tensor)


def test_resume_refuses_other_normalization(tiny_run, tiny_store, tmp_path):
    trainer = Trainer(tiny_run)
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    other = tmp_path / "other.zarr"
    shutil.copytree(tiny_store, other)
    stats = zarr.open_group(str(other / "normalization"), mode="r+")
    stats["global_mean_temperature"][0, 0] = stats["global_mean_temperature"][0, 0] + 1.0
    with pytest.raises(CheckpointError, match="normalization statistics .* differ"):
        Trainer.from_checkpoint(path, store=str(other))


def test_fit_logs_validates_and_checkpoints(tiny_run, tmp_path):
    run = dataclasses.replace(tiny_run, steps=12)
    trainer = Trainer(run, log_dir=tmp_path)
    metrics = trainer.fit(progress=False)
    assert trainer.step == 12 and np.isfinite(metrics["loss"]) and metrics["samples_per_s"] > 0
    train_rows = (tmp_path / "train.csv").read_text().splitlines()
    assert train_rows[0].startswith("step,loss,lr") and len(train_rows) == 1 + 3  # steps 5, 10, 12
    val_rows = (tmp_path / "validation.csv").read_text().splitlines()
    assert len(val_rows) == 1 + 2 and "temperature/rmse/500hPa" in val_rows[0]  # steps 10, 12
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step_00000010.pt"]
    assert "val/temperature/spread_skill" in metrics


def test_validation_is_fixed_and_reduces_sums(tiny_run):
    trainer = Trainer(tiny_run)
    a = trainer.validate()
    b = trainer.validate()
    assert a == b and a["loss"] > 0
    doubled = Trainer(tiny_run, reduce_metrics=lambda sums: {k: 2 * v for k, v in sums.items()}).validate()
    assert doubled.keys() == a.keys()
    assert all(doubled[k] == pytest.approx(a[k]) for k in a)  # scores are ratios of summed statistics


def test_init_from_single_field_run_with_frozen_field(tiny_run, tmp_path):
    single_model = dataclasses.replace(
        tiny_run.model, fields=(dataclasses.replace(tiny_run.model.fields[0], coupled_fields=()),))
    single = Trainer(dataclasses.replace(tiny_run, model=single_model))
    single.train_step()
    ckpt = single.save_checkpoint(tmp_path / "single.pt")
    run = dataclasses.replace(tiny_run, init_from=(InitFromConfig(str(ckpt), ("temperature",), freeze=True),))
    trainer = Trainer(run)
    frozen = set(trainer.frozen)
    assert frozen and all(k.startswith("fields.temperature.") for k in frozen)
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    trainer.train_step()
    trainer.train_step()
    after = trainer.raw_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["fields.u_component_of_wind.tail.weight"], after["fields.u_component_of_wind.tail.weight"])
    path = trainer.save_checkpoint(tmp_path / "multi.pt")
    ckpt.unlink()  # resuming must not need the init checkpoint any more
    resumed = Trainer.from_checkpoint(path)
    assert set(resumed.frozen) == frozen
    resumed.train_step()


def test_config_errors(tiny_run, tmp_path):
    base = yaml.safe_load(config_path("tiny").read_text())
    base["data"]["validation"] = {"start": "2000-01-02T00:00:00"}
    with pytest.raises(ConfigError, match="data: train period .* overlaps validation period"):
        load_run_config(base)
    base = yaml.safe_load(config_path("tiny").read_text())
    base["losses"] = {"crps": 1.0}
    with pytest.raises(ConfigError, match=r"losses: \['crps'\] not among the known losses"):
        load_run_config(base)
    ckpt = Trainer(tiny_run).save_checkpoint(tmp_path / "all.pt")
    everything_frozen = dataclasses.replace(tiny_run, init_from=(InitFromConfig(str(ckpt), freeze=True),))
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        Trainer(everything_frozen)


def test_command_line_trains_resumes_and_evaluates(tiny_store, tmp_path):
    out = tmp_path / "run"
    common = ["--store", str(tiny_store), "--out", str(out), "--no-progress"]
    train(["--config", "tiny", "--steps", "3", *common])
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    result = train(["--resume", str(out / "checkpoints" / "last.pt"), "--steps", "4", "--evaluate-forecast", "1",
                   *common])
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert (out / "forecast.json").exists() and "temperature/rmse" in result["forecast"]["ratio"]
