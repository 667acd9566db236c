"""``python -m atmorep_coupler.finetune`` end to end on the analytic pair: a pretrained trainer checkpoint in, the
fine-tuned weights and the scores of every system out."""

from __future__ import annotations

import dataclasses
import json
import shutil

import torch
import yaml

from atmorep_coupler.config import to_dict
from atmorep_coupler.finetune import main
from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import load_run_config
from atmorep_coupler.training.trainer import Trainer

from .conftest import base_config


def test_finetune_command_writes_weights_and_scores(analytic_pair, tmp_path, capsys):
    coarse, fine = analytic_pair
    run = load_run_config(config_path("tiny")).with_overrides(store=coarse)
    d = yaml.safe_load(yaml.safe_dump(to_dict(run)))
    d["model"] = to_dict(base_config())
    d["data"]["train"] = {"start": "2000-01-01T00:00:00", "end": "2000-01-04T00:00:00"}
    d["data"]["validation"] = None
    trainer = Trainer(load_run_config(d))
    trainer.train_step()
    ckpt = trainer.save_checkpoint(tmp_path / "pre.pt")
    pair = tmp_path / "pair"
    pair.mkdir()
    shutil.copytree(coarse, pair / "coarse.zarr")
    shutil.copytree(fine, pair / "fine.zarr")
    out = tmp_path / "out"
    assert main([str(ckpt), "--pair", str(pair), "--levels", "850", "500", "--steps", "2", "--batch-size", "2",
                 "--held-out-days", "1", "--eval-windows", "2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fine_tuned" in printed and "bilinear" in printed
    result = json.loads((out / "downscaling.json").read_text())
    systems = result["scores"]["systems"]
    assert set(systems) == {"fine_tuned", "zero_shot", "bilinear", "conservative"}
    assert result["fine_tuning"]["steps"] == 2 and result["scores"]["times"] == 6
    saved = torch.load(out / "finetuned.pt", weights_only=True)
    assert any(k.startswith("fields.temperature_fine.tail") for k in saved["model"])
