"""A small analytic pair: a 64 x 128 ERA5-layout store of closed-form fields with fine-scale structure and
its conservative coarsening to the default 32 x 64 grid (``data.paired.coarsen_store``), with statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from atmorep_coupler.config import from_dict
from atmorep_coupler.data.statistics import compute_normalization
from atmorep_coupler.data.paired import coarsen_store
from atmorep_coupler.data.store import open_store
from atmorep_coupler.model.config import ModelConfig

LEVELS = [850.0, 500.0]
LAT = 90.0 - 2.8125 * (np.arange(64) + 0.5)
LON = 2.8125 * np.arange(128)
TIMES = np.datetime64("2000-01-01T00", "ns") + np.arange(48) * np.timedelta64(3, "h")


def _fields(hours, level, lat, lon):
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    wave = np.sin(2 * lam - 2 * np.pi * hours / 72)
    small = np.cos(9 * phi) * np.sin(17 * lam + 2 * np.pi * hours / 24)  # below the coarse grid's resolution
    return {
        "temperature": 200 + 0.08 * level + 30 * np.cos(phi) + 5 * np.cos(phi) * wave + 1.5 * np.cos(phi) * small,
        "u_component_of_wind": 10 * np.cos(2 * phi) + 0.01 * level + 3 * wave + small,
    }


def write_fine_store(path) -> None:
    hours = ((TIMES - TIMES[0]) / np.timedelta64(1, "h"))[:, None, None, None]
    p = np.array(LEVELS)[None, :, None, None]
    values = _fields(hours, p, LAT[None, None, :, None], LON[None, None, None, :])
    sst = 280 + 20 * np.cos(np.deg2rad(LAT))[None, :, None] + 0 * LON + 0 * hours[:, 0]
    dims = ("time", "level", "latitude", "longitude")
    ds = xr.Dataset(
        {"temperature": (dims, values["temperature"].astype(np.float32), {"units": "K"}),
         "u_component_of_wind": (dims, values["u_component_of_wind"].astype(np.float32), {"units": "m s-1"}),
         "sea_surface_temperature": (dims[:1] + dims[2:], sst.astype(np.float32), {"units": "K"}),
         "co2_equivalent": (("time",), (280 + 0.1 * hours[:, 0, 0, 0] / 24).astype(np.float32), {"units": "ppm"})},
        coords={"time": TIMES, "level": ("level", LEVELS, {"units": "hPa"}),
                "latitude": ("latitude", LAT, {"units": "degrees_north"}),
                "longitude": ("longitude", LON, {"units": "degrees_east"})},
    )
    ds.to_zarr(path, mode="w", consolidated=False, zarr_format=3)
    store = open_store(path)
    compute_normalization(store, progress=False).save(store)


@pytest.fixture(scope="session")
def analytic_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analytic_pair")
    fine, coarse = folder / "fine.zarr", folder / "coarse.zarr"
    write_fine_store(fine)
    coarsen_store(fine, coarse, progress=False)
    store = open_store(coarse)
    compute_normalization(store, progress=False).save(store)
    return str(coarse), str(fine)


def base_config() -> ModelConfig:
    """A tiny pretrained model on the coarse grid: temperature and u on a 2 x 4 token grid, SST forcing."""
    return from_dict(ModelConfig, {
        "fields": [
            {"name": "temperature", "levels": [850, 500], "token_size": [1, 4, 4], "num_tokens": [3, 2, 4],
             "embed_dim": 32, "coupled_fields": ["u_component_of_wind", "sea_surface_temperature"]},
            {"name": "u_component_of_wind", "levels": [850, 500], "token_size": [1, 4, 4], "num_tokens": [3, 2, 4],
             "embed_dim": 32, "coupled_fields": ["temperature"]},
            {"name": "sea_surface_temperature", "token_size": [3, 8, 8], "num_tokens": [1, 1, 2], "embed_dim": 16,
             "predicted": False},
        ],
        "encoder_layers": 2, "decoder_layers": 1, "heads": 4, "ensemble_size": 4,
    })


def pretrain(coarse: str, out: Path) -> Path:
    """A trainer checkpoint of :func:`base_config`, one step on ``coarse`` (what fine-tuning starts from)."""
    from atmorep_coupler.config import to_dict
    from atmorep_coupler.train import config_path
    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    run = load_run_config(config_path("tiny")).with_overrides(store=coarse)
    d = yaml.safe_load(yaml.safe_dump(to_dict(run)))
    d["model"] = to_dict(base_config())
    d["data"]["train"] = {"start": "2000-01-01T00:00:00", "end": "2000-01-04T00:00:00"}
    d["data"]["validation"] = None
    trainer = Trainer(load_run_config(d))
    trainer.train_step()
    return trainer.save_checkpoint(out)


#: The fine-tuning of :func:`finetuned_run`: 2 steps, the last day held out and 2 of its windows scored.
FINETUNE_ARGS = ["--levels", "850", "500", "--steps", "2", "--batch-size", "2", "--held-out-days", "1",
                 "--eval-windows", "2", "--quiet"]


@pytest.fixture(scope="session")
def finetuned_run(analytic_pair, tmp_path_factory):
    """``python -m atmorep_coupler.finetune`` on the analytic pair from a one-step pretrained checkpoint: the
    pair folder, the pretrained checkpoint, the output folder and what the command printed."""
    import contextlib
    import io
    import shutil

    from atmorep_coupler.finetune import main

    folder = tmp_path_factory.mktemp("finetuned")
    coarse, fine = analytic_pair
    pair = folder / "pair"
    pair.mkdir()
    shutil.copytree(coarse, pair / "coarse.zarr")
    shutil.copytree(fine, pair / "fine.zarr")
    ckpt = pretrain(str(pair / "coarse.zarr"), folder / "pre.pt")
    out = folder / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([str(ckpt), "--pair", str(pair), "--out", str(out), *FINETUNE_ARGS])
    assert code == 0
    return {"pair": pair, "pretrained": ckpt, "out": out, "printed": printed.getvalue()}
