"""Rollout training: the context of a forecast batch is the network's own forecast, computed here
independently (the forecast masks built by hand), and no truth of a forecast slice reaches it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from atmorep_coupler.data.sampler import NeighbourhoodSampler
from atmorep_coupler.data.store import open_store
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.train import config_path, main
from atmorep_coupler.training.config import RolloutConfig, RunConfig, load_run_config
from atmorep_coupler.training.rollout import draw_rollout_steps, roll_out_context
from atmorep_coupler.training.trainer import Trainer


def with_rollout(run: RunConfig, max_steps: int) -> RunConfig:
    return dataclasses.replace(run, rollout=RolloutConfig(max_steps=max_steps))


def forecast_index(trainer: Trainer) -> int:
    """The first batch of the training stream that the masker makes a forecast batch."""
    for index in range(100):
        key = (trainer.train_sampler.stream, trainer.train_sampler.rank, index)
        if trainer.masker.strategy(trainer.config.seed, key)[0].kind == "forecast":
            return index
    raise AssertionError("no forecast batch in 100")


def hand_forecast_masks(config, tokens):
    """Every predicted field's last token time slice hidden, nothing else: built here, not by the library."""
    masks = {}
    for f in config.fields:
        x = tokens[f.name]
        hidden = torch.zeros(x.shape[:5], dtype=torch.bool)
        if f.predicted:
            hidden[:, :, -1] = True
        inputs = x.clone()
        inputs[hidden] = 0.0
        masks[f.name] = MaskedField(inputs, hidden, hidden.clone(), x[hidden])
    return masks


@pytest.fixture
def rolled(tiny_run):
    trainer = Trainer(with_rollout(tiny_run, 2))
    trainer.raw_model.eval()
    index = forecast_index(trainer)
    key = (trainer.train_sampler.stream, trainer.train_sampler.rank, index)
    batch = trainer.train_sampler.batch(index)
    masked = trainer.masker(batch.tokens, trainer.config.seed, key)
    origins = batch.origin.numpy()
    earlier = lambda j: trainer.train_sampler.read(origins - np.array([j, 0, 0]))  # noqa: E731
    return trainer, batch, masked, earlier


def test_one_step_rollout_puts_the_networks_forecast_in_the_context(rolled):
    trainer, batch, masked, earlier = rolled
    config = trainer.config.model
    out = roll_out_context(trainer.raw_model, config, masked, earlier, 1, torch.device("cpu"))
    window = earlier(1)
    with torch.no_grad():
        expected = trainer.raw_model(hand_forecast_masks(config, window.tokens), window.meta)
    T = config.predicted_fields[0].num_tokens[0]
    for f in config.fields:
        got, before = out[f.name], masked[f.name]
        if not f.predicted:
            assert torch.equal(got.inputs, before.inputs), f.name
            continue
        forecast = expected[f.name].mean.reshape(batch.tokens[f.name][:, :, T - 1].shape)
        shift = (forecast - batch.tokens[f.name][:, :, T - 2]).abs().max()
        assert shift > 1e-2, f"{f.name}: the forecast is indistinguishable from the truth ({shift})"
        torch.testing.assert_close(got.inputs[:, :, T - 2], forecast, rtol=0, atol=2e-6)
        assert torch.equal(got.inputs[:, :, : T - 2], before.inputs[:, :, : T - 2])  # older context: the truth
        assert torch.equal(got.inputs[:, :, T - 1], torch.zeros_like(got.inputs[:, :, T - 1]))  # still hidden
        assert torch.equal(got.targets, batch.tokens[f.name][:, :, T - 1].flatten(0, 3))  # the truth is the target


def test_no_truth_of_a_forecast_slice_reaches_the_rolled_out_context(rolled):
    trainer, batch, masked, earlier = rolled
    config = trainer.config.model
    T = config.predicted_fields[0].num_tokens[0]
    predicted = [f.name for f in config.predicted_fields]
    steps = 2  # forecasts replace the trained window's slices T-3 and T-2 (0 and 1 here)
    cpu = torch.device("cpu")
    reference = roll_out_context(trainer.raw_model, config, masked, earlier, steps, cpu)

    def disturbed(j):  # the truth of the forecast slices, wherever an earlier window holds them
        window = earlier(j)
        for name in predicted:
            window.tokens[name][:, :, T - 1 - steps + j : T] += 3.0
        return window

    bumped = {}
    for name, field in masked.items():
        inputs = field.inputs.clone()
        if name in predicted:
            inputs[:, :, T - 1 - steps : T - 1] += 3.0  # the trained window's view of the same slices
        bumped[name] = MaskedField(inputs, field.hidden, field.target, field.targets)
    again = roll_out_context(trainer.raw_model, config, bumped, disturbed, steps, cpu)
    for name in predicted:
        torch.testing.assert_close(again[name].inputs, reference[name].inputs, rtol=0, atol=1e-5)
        assert not torch.allclose(reference[name].inputs, masked[name].inputs)


def test_rollout_steps_are_keyed_and_cover_zero_to_the_maximum():
    draws = [draw_rollout_steps(0, (0, 0, i), 3) for i in range(400)]
    assert draws == [draw_rollout_steps(0, (0, 0, i), 3) for i in range(400)]
    counts = np.bincount(draws, minlength=4)
    assert counts.size == 4 and counts.min() > 70  # uniform on 0..3: 100 each, sd ~9
    assert all(draw_rollout_steps(0, (0, 0, i), 0) == 0 for i in range(10))


def test_sampler_history_keeps_a_rollouts_earlier_windows_in_the_period(tiny_run):
    store = open_store(tiny_run.data.store)
    period = tiny_run.data.train
    plain = NeighbourhoodSampler(store, tiny_run.model, batch_size=4, start=period.start, end=period.end)
    history = NeighbourhoodSampler(store, tiny_run.model, batch_size=4, start=period.start, end=period.end,
                                   history_steps=5)
    assert history.time_starts.min() == plain.time_starts.min() + 5
    assert history.time_starts.max() == plain.time_starts.max()
    assert store.times[history.time_starts.min() - 5] >= np.datetime64(period.start, "ns")


def test_training_with_rollout_steps_and_records_it(tiny_run, tmp_path):
    run = with_rollout(tiny_run, 2)
    trainer = Trainer(run)
    end = forecast_index(trainer) + 1
    losses = [trainer.train_step()["loss"] for _ in range(end)]
    assert np.isfinite(losses).all() and trainer.step == end
    path = trainer.save_checkpoint(tmp_path / "ckpt.pt")
    assert Trainer.from_checkpoint(path).config.rollout.max_steps == 2


@pytest.mark.parametrize("rollout, strategies, message", [
    ({"max_steps": -1}, None, "rollout.max_steps: -1 must be >= 0"),
    ({"max_steps": 2}, [{"kind": "forecast", "forecast_slices": 2}], "must have forecast_slices: 1"),
    ({"max_steps": 2}, [{"kind": "BERT"}], "no forecast to roll out"),
])
def test_rollout_settings_that_cannot_work_are_refused(tiny_store, rollout, strategies, message):
    run = yaml.safe_load(config_path("tiny").read_text())
    run["data"]["store"] = str(tiny_store)
    run["rollout"] = rollout
    if strategies:
        run["model"]["strategies"] = strategies
    with pytest.raises(ConfigError, match=message):
        load_run_config(run)


def test_the_packaged_rollout_stage_trains_the_default_model_on_the_default_data():
    """``default_rollout`` must load a checkpoint of ``default``: the same fields, layers and data periods."""
    pre, stage = load_run_config(config_path("default")), load_run_config(config_path("default_rollout"))
    assert dataclasses.replace(stage.model, strategies=pre.model.strategies) == pre.model
    assert stage.data == pre.data
    assert stage.rollout.max_steps > 0 and {s.kind for s in stage.model.strategies} == {"BERT", "forecast"}


def test_init_from_on_the_command_line_starts_a_new_run_from_a_checkpoint(tiny_store, tmp_path, capsys):
    base = ["--config", "tiny", "--store", str(tiny_store), "--no-progress", "--steps", "1"]
    assert main(base + ["--out", str(tmp_path / "first")]) == 0
    first = tmp_path / "first" / "checkpoints" / "last.pt"
    assert main(base + ["--out", str(tmp_path / "second"), "--init-from", str(first)]) == 0
    second = Trainer.from_checkpoint(tmp_path / "second" / "checkpoints" / "last.pt")
    assert [i.checkpoint for i in second.config.init_from] == [str(first)]
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "x"), "--init-from", str(tmp_path / "nothing.pt")]) == 2
    assert f"--init-from {tmp_path / 'nothing.pt'}: no such checkpoint file" in capsys.readouterr().err
    assert main(["--resume", str(first), "--init-from", str(first)]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_a_rollout_longer_than_the_training_period_is_refused_naming_the_key(tiny_run):
    store = open_store(tiny_run.data.store)
    period = tiny_run.data.train
    with pytest.raises(DataError, match=r"3 and 40 before it for rollout.max_steps.*lower rollout.max_steps"):
        NeighbourhoodSampler(store, tiny_run.model, batch_size=4, start=period.start, end=period.end, history_steps=40)
