"""Checkpoint files: their format and checksum, a trainer checkpoint's contents, and whether it fits the data.

The one place that reads checkpoints, for training (resume), the component and the verification alike;
it depends on the model's configuration and the data's statistics only (not on training).

**The file.** 
A checkpoint is a ``torch.save`` of a dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it: the restricted unpickler builds only those types and
never runs code from the file. :func:`save_state` adds two keys to the dict it is given, whatever else
the dict holds: ``format`` (which kind of file and its version, e.g. ``atmorep_coupler.trainer/2``) and
``sha256``, a digest of every key and value (tensor bytes included), and writes the file atomically.
:func:`load_state` accepts only a dict of an expected format and recomputes the digest, so a file cut
short, overwritten, holding something else, or with flipped bytes is a :class:`CheckpointError` naming the
file, never a traceback or silently different weights. Files of a format's version before checksums
(``.../1``) load with a warning.

**A trainer checkpoint** (:func:`load_trainer_state`) also has every key the trainer writes; its model
configuration is the ``model`` section of the run YAML it records (:func:`load_checkpoint`). What inference
must repeat of training is checked against the data at hand: the normalization statistics
(:func:`normalization_fingerprint`, :func:`check_statistics`) and the data's time step
(:func:`trained_data_step`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from atmorep_coupler.config import from_dict
from atmorep_coupler.data.normalization import Normalization
from atmorep_coupler.errors import CheckpointError, ConfigError, DataError
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.timeutil import format_duration, parse_duration

__all__ = ["save_state", "load_state", "state_digest", "CHECKSUM_KEY", "FORMAT_KEY", "TRAINER_FORMAT", "WEIGHTS_FORMAT",
           "RNG_FORMAT", "TRAINER_KEYS", "load_trainer_state", "load_checkpoint", "normalization_fingerprint",
           "check_statistics", "trained_data_step"]

FORMAT_KEY = "format"
CHECKSUM_KEY = "sha256"
TRAINER_FORMAT = "atmorep_coupler.trainer/2"
"""A trainer checkpoint (``training/trainer.py``): model, optimiser, schedule, RNG, config, statistics."""
TRAINER_KEYS = ("config", "step", "model", "optimizer", "scheduler", "rng", "frozen", "normalization")
"""The keys every trainer checkpoint has."""
WEIGHTS_FORMAT = "atmorep_coupler.weights/1"
"""Multiformer weights alone: ``{"model": state_dict}`` (for :func:`~atmorep_coupler.model.multiformer.load_fields`)."""
RNG_FORMAT = "atmorep_coupler.rng/1"
"""One Ray Train rank's RNG state in a distributed checkpoint."""


def state_digest(state: Mapping) -> str:
    """SHA-256 of every key and value of ``state`` except :data:`CHECKSUM_KEY`: structure, types, scalars
    and the bytes, dtype and shape of every tensor (in key order, so it does not depend on dict order)."""
    digest = hashlib.sha256()

    def feed(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            tensor = node.detach().to("cpu").contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}|".encode())
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
        elif isinstance(node, Mapping):
            digest.update(f"D{len(node)}|".encode())
            for key in sorted(node, key=lambda k: (type(k).__name__, str(k))):
                feed(key)
                feed(node[key])
        elif isinstance(node, (list, tuple)):
            digest.update(f"{type(node).__name__[0]}{len(node)}|".encode())
            for item in node:
                feed(item)
        elif isinstance(node, (bytes, bytearray)):
            digest.update(f"B{len(node)}|".encode())
            digest.update(node)
        else:  # str, int, float, bool, None, torch dtypes and devices
            text = repr(node)
            digest.update(f"{type(node).__name__}{len(text)}|{text}".encode())

    feed({k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def save_state(state: Mapping, path: str | Path, *, format: str) -> Path:
    """Write ``state`` with ``format`` and its checksum to ``path`` (temporary file, then rename: a crash
    never leaves half a file under the name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = {**state, FORMAT_KEY: format}
    stamped[CHECKSUM_KEY] = state_digest(stamped)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(stamped, tmp)
    os.replace(tmp, path)
    return path


def load_state(path: str | Path, formats: Iterable[str], *, what: str = "checkpoint") -> dict:
    """The dict :func:`save_state` wrote to ``path`` in one of ``formats`` (``name/version``), checksum
    verified, read with ``weights_only=True``; :class:`CheckpointError` naming the file for anything else."""
    path = Path(path)
    formats = tuple(formats)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises KeyError, EOFError, UnpicklingError, ... for non-checkpoints
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{path}: not a readable {what} ({type(exc).__name__}: {reason}); torch.load(weights_only=True) reads only "
            "tensors, numbers, strings, lists and dicts, so nothing in the file was run"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a {what} (a dict of format {formats[0]!r})")
    found = state.get(FORMAT_KEY)
    legacy = {f.rsplit("/", 1)[0] + "/1" for f in formats}
    if found not in formats and found not in legacy:
        raise CheckpointError(f"{path}: {what} format {found!r}, expected {' or '.join(map(repr, formats))}")
    if found in legacy and found not in formats and CHECKSUM_KEY not in state:
        warnings.warn(f"{path}: a {what} of format {found!r}, written before checksums; it is loaded unverified",
                      stacklevel=2)
        return state
    saved = state.get(CHECKSUM_KEY)
    if not isinstance(saved, str):
        raise CheckpointError(f"{path}: {what} without its {CHECKSUM_KEY!r} checksum; the file is damaged or not ours")
    if state_digest(state) != saved:
        raise CheckpointError(
            f"{path}: {what} checksum mismatch: its contents changed after it was written (a damaged copy or "
            "disk?); use another copy of the file"
        )
    return state


def load_trainer_state(path: str | Path) -> dict:
    """A trainer checkpoint, verified (format, checksum: :func:`load_state`) and complete (every key the
    trainer writes); :class:`CheckpointError` naming the file otherwise."""
    state = load_state(path, [TRAINER_FORMAT], what="trainer checkpoint")
    missing = [key for key in TRAINER_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: trainer checkpoint without {missing}; the file is incomplete or not a trainer's")
    return state


def load_checkpoint(path: str | Path) -> tuple[ModelConfig, dict]:
    """The model config and the state of a trainer checkpoint, read with ``weights_only=True``: the
    ``model`` section of the run YAML it records, checked as a model config."""
    state = load_trainer_state(path)  # format, checksum and keys verified; never unpickles code
    origin = f"{path}: config"
    try:
        run = yaml.safe_load(state["config"])
        if not isinstance(run, dict) or "model" not in run:
            raise ConfigError(f"{origin}: no 'model' section")
        model = from_dict(ModelConfig, run["model"], path="model", origin=origin)
    except (ConfigError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path}: its run configuration is invalid: {exc}") from None
    return model, state


def normalization_fingerprint(norm: Normalization) -> str:
    """SHA-256 over the normalization statistics (names and values), to detect a changed store."""
    digest = hashlib.sha256()
    for name in sorted(norm.dataset.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(norm.dataset[name].values).tobytes())
    return digest.hexdigest()


def check_statistics(path: str | Path, state: Mapping, norm: Normalization, latitudes: np.ndarray,
                     longitudes: np.ndarray, data: str) -> None:
    """Refuse statistics other than the training's, or ``data`` (named in the message) on a grid
    ``latitudes x longitudes`` other than the statistics'."""
    if normalization_fingerprint(norm) != state["normalization"]["fingerprint"]:
        raise CheckpointError(
            f"{path}: trained with other normalization statistics ({state['normalization']['source']}) than "
            f"{norm.source}; point 'normalization' (or 'initial_condition') to the training statistics"
        )
    stats_grid = (norm.dataset.sizes.get("latitude"), norm.dataset.sizes.get("longitude"))
    data_grid = (latitudes.size, longitudes.size)
    if stats_grid != data_grid or not (
        np.allclose(norm.dataset["latitude"].values, latitudes)
        and np.allclose(norm.dataset["longitude"].values, longitudes)
    ):
        raise CheckpointError(
            f"{path}: trained on a {stats_grid[0]}x{stats_grid[1]} grid ({norm.source}), but the initial "
            f"condition {data} is on a different {data_grid[0]}x{data_grid[1]} grid"
        )


def trained_data_step(path: str | Path, state: Mapping, times: np.ndarray, data: str) -> float:
    """Seconds per data step of the training data (the checkpoint's record; for checkpoints written
    before it was kept, that of ``times``, the data at hand, named ``data``), which the data must share."""
    if times.size < 2:
        raise DataError(f"{data}: need at least two times to know the data's time step")
    have = float((times[1] - times[0]) / np.timedelta64(1, "s"))
    recorded = state.get("data", {}).get("time_step")
    if recorded is None:
        return have
    trained = parse_duration(recorded).total_seconds()
    if abs(trained - have) > 1e-6:
        raise DataError(
            f"{data}: time step {format_duration(dt.timedelta(seconds=have))}, but checkpoint {path} "
            f"was trained on data every {recorded}; the context window must be sampled as in training: use "
            f"an initial condition every {recorded}"
        )
    return trained
