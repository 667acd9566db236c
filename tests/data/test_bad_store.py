"""Damaged chunks and wrong units are DataErrors naming the variable, the chunk or time, and the fix,
wherever data enter (store reads, training, the AtmoRep component); a truncated chunk never reaches blosc."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.data.store import check_blosc_frame, open_store
from atmorep_coupler.errors import DataError
from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import load_run_config
from atmorep_coupler.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
CHUNK = "temperature/c/0/0/0/0"  # the first day of temperature, every level


@pytest.fixture
def copy_store(tiny_store, tmp_path):
    return lambda name="bad.zarr": Path(shutil.copytree(tiny_store, tmp_path / name))


def _truncate(path: Path, fraction: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * fraction))


def test_truncated_chunk_is_found_before_decoding(copy_store):
    store = copy_store()
    _truncate(store / CHUNK)
    with pytest.raises(DataError) as info:
        open_store(store).read("temperature", time=slice(0, 3))
    message = str(info.value)
    assert f"variable 'temperature': chunk {CHUNK} (times 2000-01-01T00:00:00 .. 2000-01-01T21:00:00)" in message
    assert "but its blosc header says" in message and "cut short" in message and "restore that chunk" in message
    open_store(store).read("temperature", time=slice(8, 10))  # the other chunks read as before


def test_random_bytes_chunk_is_not_a_blosc_frame(copy_store):
    store = copy_store()
    (store / CHUNK).write_bytes(np.random.default_rng(1).bytes((store / CHUNK).stat().st_size))
    with pytest.raises(DataError, match=rf"chunk {CHUNK} .*its blosc header says it decodes to \d+ bytes, the array's "
                                        r"chunks hold 458752: not a blosc frame"):
        open_store(store).read("temperature", time=[1])


def test_zarr_v2_chunks_are_checked_too(tmp_path, make_era5):
    path = tmp_path / "v2.zarr"
    make_era5().to_zarr(path, zarr_format=2, consolidated=True,
                        encoding={"temperature": {"compressors": [numcodecs.Blosc(cname="lz4")]}})
    chunk = next(p for p in (path / "temperature").iterdir() if not p.name.startswith("."))
    _truncate(chunk, 0.4)
    with pytest.raises(DataError, match=r"chunk temperature/0\.0\.0\.0 .* blosc header says"):
        open_store(path).read("temperature")


def test_blosc_header_check_has_the_numbers():
    frame = np.zeros(16, np.uint8)
    frame[4:8] = np.frombuffer(np.uint32(64).tobytes(), np.uint8)  # nbytes
    frame[12:16] = np.frombuffer(np.uint32(40).tobytes(), np.uint8)  # cbytes
    with pytest.raises(DataError, match="holds 16 bytes but its blosc header says 40: cut short"):
        check_blosc_frame(frame, 64)
    with pytest.raises(DataError, match="shorter than its 16-byte header"):
        check_blosc_frame(frame[:10])


def test_training_on_a_truncated_store_ends_in_one_error_line(copy_store, tmp_path):
    """The case that crashed training with a segmentation fault: every temperature chunk cut in half."""
    store = copy_store()
    for chunk in (store / "temperature" / "c").rglob("*"):
        if chunk.is_file():
            _truncate(chunk)
    result = subprocess.run(
        [sys.executable, "-m", "atmorep_coupler.train", "--config", "tiny", "--store", str(store), "--steps", "1",
         "--no-progress", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: store '{store}': variable 'temperature': chunk temperature/c/"), last
    assert "Traceback" not in result.stderr


def _set_units(store: Path, variable: str, units: str | None, *, scale: float = 1.0, offset: float = 0.0) -> None:
    array = zarr.open_group(store, mode="r+")[variable]
    if units is None:
        del array.attrs["units"]
    else:
        array.attrs["units"] = units
    if scale != 1.0 or offset:
        array[:] = array[:] * scale + offset


def _trainer(store: Path) -> Trainer:
    return Trainer(load_run_config(config_path("tiny")).with_overrides(store=str(store), steps=1))


@pytest.mark.parametrize("units, fragment", [
    (None, "variable 'temperature': has no CF 'units' attribute; add one (e.g. 'K')"),
    ("Kelvin degrees", "variable 'temperature': cannot parse units 'Kelvin degrees'"),
    ("m", "variable 'temperature': units 'm' do not fit its CF standard_name 'air_temperature' (canonical units 'K')"),
    ("degC", "variable 'temperature': units 'degC', but its normalization statistics"),
])
def test_units_attribute_is_checked_where_training_and_the_component_start(units, fragment, copy_store,
                                                                           tiny_default_checkpoint):
    store = copy_store()
    _set_units(store, "temperature", units)
    with pytest.raises(DataError) as info:
        _trainer(store)
    assert fragment in str(info.value) and str(store) in str(info.value), str(info.value)
    with pytest.raises(DataError) as info:  # the component checks what training checked
        AtmoRepComponent.from_config({"start": "2000-01-02T00:00:00", "time_step": "PT3H",
                                      "checkpoint": str(tiny_default_checkpoint), "initial_condition": str(store)})
    assert fragment in str(info.value), str(info.value)


def test_celsius_data_labelled_kelvin_is_refused_at_the_first_read(copy_store):
    store = copy_store()
    _set_units(store, "temperature", "K", offset=-273.15)  # the values are degC now; the label still says K
    trainer = _trainer(store)  # the attribute itself is fine ...
    with pytest.raises(DataError) as info:  # ... the values are not (the loss was 6e5 before this check)
        trainer.train_step()
    message = str(info.value)
    assert f"store '{store}': variable 'temperature' at 2000-01-0" in message
    assert "is outside the plausible range 100 .. 400 K" in message and "degC labelled K" in message


def test_kelvin_data_labelled_celsius_is_refused_by_the_store(copy_store):
    store = copy_store()
    _set_units(store, "temperature", "degC")  # values around 250 "degC"
    with pytest.raises(DataError, match=r"variable 'temperature' at 2000-01-01T00:00:00: value \d+\.?\d* degC is outside "
                                        r"the plausible range -173.15 .. 126.85 degC"):
        open_store(store).read("temperature", time=slice(0, 2))
