"""Every malformed checkpoint file is a CheckpointError naming the file, through every loader; nothing in a
file is ever run; a flipped byte is found by the checksum."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from atmorep_coupler.model.checkpoint import TRAINER_FORMAT, load_state, save_state, state_digest
from atmorep_coupler.model.checkpoint import load_checkpoint
from atmorep_coupler.errors import CheckpointError
from atmorep_coupler.model.multiformer import Multiformer, load_fields
from atmorep_coupler.training.trainer import Trainer


class _Payload:
    """Unpickling this would create ``marker``: the file must be refused before that can happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def good(tiny_default_checkpoint, tmp_path_factory):
    return shutil.copy(tiny_default_checkpoint, tmp_path_factory.mktemp("checkpoints") / "good.pt")


@pytest.fixture(scope="module")
def loaders(good):
    """Every way a user hands a checkpoint file to the package: ``{name: load(path)}``."""
    model = Multiformer(load_checkpoint(good)[0])
    return {
        "trainer": Trainer.from_checkpoint,
        "component": load_checkpoint,
        "load_fields": lambda path: load_fields(model, path),
    }


CASES = {
    "text": (lambda p, tmp: p.write_text("model: {}\nstep: 3\n"), "not a readable"),
    "empty": (lambda p, tmp: p.write_bytes(b""), "not a readable"),
    "random": (lambda p, tmp: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable"),
    "pickle-payload": (lambda p, tmp: p.write_bytes(pickle.dumps({"model": _Payload(str(tmp / "ran"))}, protocol=2)),
                       "nothing in the file was run"),
    "torch-payload": (lambda p, tmp: torch.save({"model": _Payload(str(tmp / "ran"))}, p), "nothing in the file was run"),
    "list": (lambda p, tmp: torch.save([1, 2, 3], p), "holds a list, not a"),
    "dict-without-format": (lambda p, tmp: torch.save({"a": torch.zeros(2)}, p), "format None, expected"),
    "other-format": (lambda p, tmp: save_state({"a": 1}, p, format="someone.else/3"), "format 'someone.else/3'"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_files_are_named_errors_and_nothing_runs(case, loaders, tmp_path):
    path = tmp_path / f"{case}.pt"
    make, fragment = CASES[case]
    make(path, tmp_path)
    for name, load in loaders.items():
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: "), (name, str(info.value))
        assert fragment in str(info.value), (name, str(info.value))
    assert not (tmp_path / "ran").exists()  # the payload never ran


def test_flipped_bytes_fail_the_checksum(good, loaders, tmp_path, flipped_checkpoint):
    bad = flipped_checkpoint(good, tmp_path / "flipped.pt")
    raw = torch.load(bad, weights_only=True)  # plain torch reads the damaged weights without a word ...
    assert raw["format"] == TRAINER_FORMAT and state_digest(raw) != raw["sha256"]
    for load in loaders.values():  # ... the package does not
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            load(bad)


def test_a_file_missing_trainer_keys_is_refused(good, tmp_path):
    state = torch.load(good, weights_only=True)
    del state["optimizer"]
    path = save_state(state, tmp_path / "partial.pt", format=TRAINER_FORMAT)  # a valid file, incomplete
    with pytest.raises(CheckpointError, match=r"partial.pt: trainer checkpoint without \['optimizer'\]"):
        load_checkpoint(path)


def test_weights_without_multiformer_parameters_are_refused(good):
    model = Multiformer(load_checkpoint(good)[0])
    with pytest.raises(CheckpointError, match="holds no multiformer parameters"):
        load_fields(model, {"model": {"something": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="holds a list"):
        load_fields(model, [torch.zeros(1)])


def test_round_trip_and_legacy_files(good, tmp_path):
    state = load_state(good, [TRAINER_FORMAT])
    assert state["sha256"] == state_digest(state)
    legacy = {k: v for k, v in state.items() if k != "sha256"} | {"format": "atmorep_coupler.trainer/1"}
    torch.save(legacy, tmp_path / "v1.pt")
    with pytest.warns(UserWarning, match="written before checksums"):
        assert load_state(tmp_path / "v1.pt", [TRAINER_FORMAT])["step"] == state["step"]
    assert not list(tmp_path.glob("*.tmp"))  # save_state leaves no temporary file
