"""docs/troubleshooting.md shows the real error messages: each ```text block under a
``<!-- trigger: NAME -->`` comment must appear in what ``TRIGGERS[NAME]`` makes the code print
(``<...>`` in the doc matches anything), and every trigger has its block.

The triggers go through the same entry points a user does (``train.main``, ``run.main``,
``data.__main__.main``, the component class) on the tiny default store and checkpoint; the CLI
triggers run in-process, and the output is what the CLI prints: ``error: ...`` on stderr.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from .doc_blocks import REPO

DOC = REPO / "docs" / "troubleshooting.md"
CONFIGS = REPO / "coupling_configs"
_TRIGGER = re.compile(r"^<!--\s*trigger:\s*(\w+)\s*-->\s*$")
_PLACEHOLDER = re.compile(r"<[a-z][^<>\n]*>")


def documented() -> dict[str, tuple[int, str]]:
    """``{trigger name: (line, text of the ```text block right below it)}``."""
    lines, out = DOC.read_text().splitlines(), {}
    for k, line in enumerate(lines):
        match = _TRIGGER.match(line)
        if not match:
            continue
        assert lines[k + 1].strip() == "```text", f"{DOC.name}:{k + 1}: trigger {match[1]} must be directly above a ```text block"
        end = lines.index("```", k + 2)
        assert match[1] not in out, f"{DOC.name}:{k + 1}: trigger {match[1]} documented twice"
        out[match[1]] = (k + 1, "\n".join(lines[k + 2:end]))
    return out


def pattern(text: str) -> re.Pattern:
    """The doc text as a regular expression: ``<...>`` placeholders match anything, runs of
    whitespace match any whitespace, everything else literally."""
    parts = _PLACEHOLDER.split(text.strip())
    return re.compile(".+?".join(r"\s+".join(map(re.escape, p.split())) for p in parts), re.S)


# ---------------------------------------------------------------------------------------------
# triggers


@dataclass
class Context:
    tmp: Path
    store: Path
    checkpoint: Callable[[], Path]
    capsys: pytest.CaptureFixture
    fixture: Callable[[str], object]

    def store_copy(self, name: str) -> Path:
        return shutil.copytree(self.store, self.tmp / name)

    def tiny_config(self, replace: tuple[str, str] | None = None, name: str = "my_run.yaml") -> str:
        text = (REPO / "atmorep_coupler" / "configs" / "tiny.yaml").read_text()
        if replace:
            assert replace[0] in text, replace
            text = text.replace(*replace)
        (self.tmp / name).write_text(text)
        return name


def _train(ctx: Context, *argv: str) -> str:
    """What ``python -m atmorep_coupler.train ARGV`` prints on stderr: one ``error: ...`` line."""
    from atmorep_coupler.train import main

    return _cli(ctx, main, *argv, "--no-progress", "--out", str(ctx.tmp / "train_out"))


def _cli(ctx: Context, main: Callable, *argv: str) -> str:
    """What a CLI that reports errors as ``error: ...`` prints on stderr."""
    ctx.capsys.readouterr()
    assert main(list(argv)) == 2, f"{argv} did not fail"
    return ctx.capsys.readouterr().err


def _run(ctx: Context, *argv: str) -> str:
    from atmorep_coupler.run import main

    return _cli(ctx, main, *argv, "--no-progress")


def _raised(fn: Callable) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    raise AssertionError("no error raised")


def cuda_wheels(ctx: Context) -> str:
    # what scripts/setup_env.sh echoes when pip pulled nvidia-*/triton packages (pip is not run here)
    script = (REPO / "scripts" / "setup_env.sh").read_text()
    match = re.search(r"grep -qiE '\^\(nvidia-\|triton \)'.*?\n\s*echo \"([^\"]+)\" >&2", script, re.S)
    assert match, "scripts/setup_env.sh no longer checks for CUDA packages"
    return match[1]


def config_unknown_key(ctx: Context) -> str:
    return _train(ctx, "--config", ctx.tiny_config(("      embed_dim: 32", "      embed_dims: 32")),
                  "--store", str(ctx.store), "--steps", "1")


def config_wrong_type(ctx: Context) -> str:
    return _train(ctx, "--config", ctx.tiny_config(("batch_size: 4", "batch_size: four")),
                  "--store", str(ctx.store), "--steps", "1")


def config_duplicate_key(ctx: Context) -> str:
    return _train(ctx, "--config", ctx.tiny_config(("  batch_size: 4", "  batch_size: 4\n  batch_size: 8")),
                  "--store", str(ctx.store), "--steps", "1")


def config_yaml_limits(ctx: Context) -> str:
    bomb = "".join(f"  {name}: &{name} [{', '.join([f'*{prev}' if prev else 'x'] * 9)}]\n"
                   for prev, name in zip(["", *"abcde"], "abcdef"))  # 9**6 values in 6 short lines
    (ctx.tmp / "my_coupling.yaml").write_text("notes:\n" + bomb + (CONFIGS / "forcing_only.yaml").read_text())
    return _run(ctx, "my_coupling.yaml", "--out", "runs/x")


def store_missing_variable(ctx: Context) -> str:
    config = ctx.tiny_config(("coupled_fields: [u_component_of_wind, sea_surface_temperature]",
                              "coupled_fields: [specific_humidity, sea_surface_temperature]"))
    text = (ctx.tmp / config).read_text().replace("- name: u_component_of_wind", "- name: specific_humidity")
    (ctx.tmp / config).write_text(text)
    return _train(ctx, "--config", config, "--store", str(ctx.store), "--steps", "1")


def store_missing_level(ctx: Context) -> str:
    return _train(ctx, "--config", ctx.tiny_config(("levels: [500, 850]", "levels: [400, 850]")),
                  "--store", str(ctx.store), "--steps", "1")


def store_unknown_units(ctx: Context) -> str:
    import zarr

    from atmorep_coupler.data.__main__ import main

    ctx.store_copy("era5.zarr")
    zarr.open_group(ctx.tmp / "era5.zarr", mode="r+")["temperature"].attrs["units"] = "Kelvin degrees"
    return _cli(ctx, main, "stats", "era5.zarr", "--quiet")


def store_missing_time(ctx: Context) -> str:
    from atmorep_coupler.component.atmorep import AtmoRepComponent

    return _raised(lambda: AtmoRepComponent.from_config({
        "start": "2000-03-16T00:00:00", "time_step": "PT3H",
        "checkpoint": str(ctx.checkpoint()), "initial_condition": str(ctx.store)}))


def store_damaged_chunk(ctx: Context) -> str:
    import os

    from atmorep_coupler.data.__main__ import main

    store = ctx.store_copy("era5.zarr")
    chunk = store / "temperature" / "c" / "0" / "0" / "0" / "0"
    os.truncate(chunk, chunk.stat().st_size // 2)  # a copy cut short
    return _cli(ctx, main, "stats", "era5.zarr", "--quiet")


def store_implausible_values(ctx: Context) -> str:
    import zarr

    from atmorep_coupler.data.__main__ import main

    store = ctx.store_copy("era5.zarr")
    temperature = zarr.open_group(store, mode="r+")["temperature"]
    temperature[:] = temperature[:] - 273.15  # converted to degC, the attribute left at K
    return _cli(ctx, main, "stats", "era5.zarr", "--quiet")


def checkpoint_damaged(ctx: Context) -> str:
    path = ctx.fixture("flipped_checkpoint")(ctx.checkpoint(), ctx.tmp / "trainer.pt")  # 64 bytes of a tensor flipped
    return _train(ctx, "--resume", str(path), "--store", str(ctx.store), "--steps", "4")


def coupling_untrusted_kind(ctx: Context) -> str:
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/x", "--set", "components.model.kind=mymodels.ocean:Slab")


def units_not_convertible(ctx: Context) -> str:
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/x",
                "--set", "components.model.config.fields.0.units=J m-2")


def nan_in_training(ctx: Context) -> str:
    import zarr

    path = ctx.store_copy("gappy.zarr")
    temperature = zarr.open_group(path, mode="r+")["temperature"]
    values = temperature[:]
    values[:, 3] = np.nan  # every time at 500 hPa, so the first sample hits it
    temperature[:] = values
    return _train(ctx, "--config", ctx.tiny_config(), "--store", str(path), "--steps", "1")


def nan_import(ctx: Context) -> str:
    """A prescribed SST that is NaN over a land box, regridded without a fallback onto a receiver."""
    import pandas as pd
    import xarray as xr

    lat, lon = np.arange(85.0, -90.0, -10.0), np.arange(5.0, 360.0, 10.0)
    sst = np.full((2, lat.size, lon.size), 15.0)
    sst[:, 6:10, 10:15] = np.nan
    xr.Dataset({"tos": (("time", "lat", "lon"), sst, {"units": "degC"})},
               coords={"time": pd.date_range("2000-01-01", periods=2, freq="D"),
                       "lat": ("lat", lat, {"units": "degrees_north"}),
                       "lon": ("lon", lon, {"units": "degrees_east"})}).to_netcdf(ctx.tmp / "sst.nc")
    model_grid = {"type": "gaussian", "nlat": 32, "nlon": 64}
    config = {
        "version": 1,
        "run": {"name": "sst", "start": "2000-01-01T00:00:00", "end": "2000-01-02T00:00:00"},
        "grids": {"sst": {"type": "regular_latlon", "nlat": 18, "nlon": 36}, "model": model_grid},
        "components": {
            "sst": {"kind": "prescribed", "grid": "sst", "timestep": "P1D",
                    "config": {"path": "sst.nc", "variable": "tos", "field": "sst", "units": "K"}},
            "model": {"kind": "receiver", "grid": "model", "timestep": "P1D",
                      "config": {"grid": model_grid, "fields": [{"name": "sst", "units": "K"}]}}},
        "couplings": [{"from": "sst", "to": "model", "fields": [{"src": "sst", "dst": "sst"}], "period": "P1D",
                       "time_reduction": "instant", "remap": {"method": "conservative_normed"}}],
    }
    (ctx.tmp / "sst_run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    message = _run(ctx, "sst_run.yaml", "--out", "runs/sst")
    # and the documented fix works
    assert _fixed_run(ctx, "sst_run.yaml", "--out", "runs/sst-fixed", "--set", "couplings.0.remap.src_mask=true",
                      "--set", "couplings.0.remap.fallback=[nearest_s2d]")
    return message


def _fixed_run(ctx: Context, *argv: str) -> bool:
    from atmorep_coupler.run import main

    return main([*argv, "--no-progress"]) == 0


def checkpoint_other_statistics(ctx: Context) -> str:
    import zarr

    path = ctx.store_copy("restats.zarr")
    std = zarr.open_group(path / "normalization", mode="r+")["std_temperature"]
    std[:] = std[:] * 1.01  # statistics recomputed after the data changed
    return _train(ctx, "--resume", str(ctx.checkpoint()), "--store", str(path), "--steps", "4")


def checkpoint_levels(ctx: Context) -> str:
    from atmorep_coupler.component.atmorep import AtmoRepComponent

    return _raised(lambda: AtmoRepComponent.from_config({
        "start": "2000-01-02T00:00:00", "time_step": "PT3H", "levels_hPa": [500, 850],
        "checkpoint": str(ctx.checkpoint()), "initial_condition": str(ctx.store)}))


def coupling_period(ctx: Context) -> str:
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/x", "--set", "components.model.timestep=PT5H")


def coupling_no_producer(ctx: Context) -> str:
    config = yaml.safe_load((CONFIGS / "forcing_only.yaml").read_text())
    config["couplings"] = [c for c in config["couplings"] if c["from"] != "co2"]
    (ctx.tmp / "my_coupling.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return _run(ctx, "my_coupling.yaml", "--out", "runs/x")


def coupling_weight_file(ctx: Context) -> str:
    from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

    weights = ctx.tmp / "insolation_to_t21.nc"  # south-to-north source, as in ESMF's examples
    Regridder(LatLonGrid(64, 128, lat_order="ascending"), GaussianGrid(32, 64), "conservative_normed").to_netcdf(weights)
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/x",
                "--set", f"couplings.0.remap.weights={weights}")


def coupling_outside_out(ctx: Context) -> str:
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/x", "--set", "outputs.0.path=/data/daily.zarr")


def coupling_no_restart(ctx: Context) -> str:
    return _run(ctx, "coupling_configs/forcing_only.yaml", "--out", "runs/new", "--resume")


def ray_no_gpu(ctx: Context) -> str:
    import torch

    workers = torch.cuda.device_count() + 1  # one more GPU worker than this machine has GPUs
    cmd = [sys.executable, "-m", "atmorep_coupler.train", "--config", "tiny", "--store", str(ctx.store),
           "--num-workers", str(workers), "--gpus-per-worker", "1", "--storage", str(ctx.tmp / "ray_runs"),
           "--no-progress"]
    result = subprocess.run(cmd, cwd=ctx.tmp, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def ray_storage_relative(ctx: Context) -> str:
    # refused before Ray is contacted, so the address need not exist
    return _train(ctx, "--config", "tiny", "--store", str(ctx.store), "--num-workers", "1",
                  "--storage", "runs", "--address", "127.0.0.1:1")


def verify_climatology_coverage(ctx: Context) -> str:
    # the default out-of-sample climatology is the truth store over the training period (1-3 January here);
    # a 1-day window cannot reach the verified 09 UTC from there
    from atmorep_coupler.verify import main

    return _cli(ctx, main, str(ctx.checkpoint()), "--store", str(ctx.store), "--starts", "2000-01-03T06:00:00",
                "--hours", "6", "--no-coupled", "--no-perfect", "--no-progress", "--climatology-window", "1",
                "--out", str(ctx.tmp / "verify"))


def _finetune(ctx: Context, coarse: Path, fine: Path, *argv: str) -> str:
    """What ``python -m atmorep_coupler.finetune CKPT --pair PAIR`` prints for the pair (coarse, fine)."""
    from atmorep_coupler.finetune import main

    pair = ctx.tmp / "pair"
    pair.mkdir()
    (pair / "coarse.zarr").symlink_to(coarse, target_is_directory=True)
    (pair / "fine.zarr").symlink_to(fine, target_is_directory=True)
    return _cli(ctx, main, str(ctx.checkpoint()), "--pair", str(pair), "--out", str(ctx.tmp / "ft"), "--quiet", *argv)


def finetune_missing_variable(ctx: Context) -> str:
    return _finetune(ctx, ctx.store, ctx.store, "--variable", "relative_humidity")


def finetune_grids(ctx: Context) -> str:
    return _finetune(ctx, ctx.store, ctx.store)  # the model's store given as the fine one too


def finetune_statistics(ctx: Context) -> str:
    import zarr

    path = ctx.store_copy("restats.zarr")
    std = zarr.open_group(path / "normalization", mode="r+")["std_temperature"]
    std[:] = std[:] * 1.01  # a pair whose coarse store is not the one the checkpoint was pretrained on
    return _finetune(ctx, path, path)


def downscaling_without_fine_field(ctx: Context) -> str:
    # downscaling.yaml given a trainer checkpoint: its component has no field on the fine grid
    sets = {"components.atmorep.config.checkpoint": ctx.checkpoint(), "components.atmorep.config.initial_condition":
            ctx.store, "components.sst.config.path": ctx.store, "run.start": "2000-01-02T00:00:00",
            "run.end": "2000-01-02T03:00:00"}
    return _run(ctx, "coupling_configs/downscaling.yaml", "--out", "runs/x",
                *[arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")])


TRIGGERS: dict[str, Callable[[Context], str]] = {f.__name__: f for f in (
    cuda_wheels, config_unknown_key, config_wrong_type, config_duplicate_key, config_yaml_limits, store_missing_variable,
    store_missing_level, store_unknown_units, store_damaged_chunk, store_implausible_values, store_missing_time,
    units_not_convertible, nan_in_training, nan_import, checkpoint_other_statistics, checkpoint_levels, checkpoint_damaged,
    coupling_period, coupling_no_producer, coupling_weight_file, coupling_untrusted_kind, coupling_outside_out,
    coupling_no_restart, ray_no_gpu, ray_storage_relative,
    verify_climatology_coverage, finetune_missing_variable, finetune_grids, finetune_statistics,
    downscaling_without_fine_field)}
MARKS = {"ray_no_gpu": [pytest.mark.ray]}


# ---------------------------------------------------------------------------------------------
# tests


def test_every_documented_error_has_a_trigger_and_back():
    names = set(documented())
    assert names - set(TRIGGERS) == set(), "documented without a trigger"
    assert set(TRIGGERS) - names == set(), "triggers without a documented message"


@pytest.mark.parametrize("name", [pytest.param(n, marks=MARKS.get(n, [])) for n in TRIGGERS])
def test_documented_message_is_what_the_code_prints(name, tiny_store, request, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coupling_configs").symlink_to(CONFIGS, target_is_directory=True)
    ctx = Context(tmp_path, tiny_store, lambda: request.getfixturevalue("tiny_default_checkpoint"), capsys,
                  request.getfixturevalue)
    line, text = documented()[name]
    actual = TRIGGERS[name](ctx)
    assert pattern(text).search(actual), (
        f"docs/troubleshooting.md:{line} ({name}) does not match what the code prints.\n"
        f"--- doc ---\n{text}\n--- code ---\n{actual}")


def test_placeholders_are_wildcards_and_the_rest_is_literal():
    p = pattern("error: store '<store>': no level 400 hPa; available [200.0, 250.0]")
    assert p.search("error: store '/a/b.zarr': no level 400 hPa; available [200.0, 250.0]")
    assert not p.search("error: store '/a/b.zarr': no level 450 hPa; available [200.0, 250.0]")
    assert not p.search("error: store '/a/b.zarr': no level 400 hPa; available [200.0x 250.0]")
    assert pattern("a  b\nc").search("a b c")

