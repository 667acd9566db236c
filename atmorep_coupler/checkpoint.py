"""The checkpoint file: a format version and a checksum around whatever state dict is saved.

A checkpoint is a ``torch.save`` of a dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it: the restricted unpickler builds only those types and
never runs code from the file. :func:`save_state` adds two keys to the dict it is given, whatever else
the dict holds: ``format`` (which kind of file and its version, e.g. ``atmorep_coupler.trainer/2``) and
``sha256``, a digest of every key and value (tensor bytes included), and writes the file atomically.
:func:`load_state` accepts only a dict of an expected format and recomputes the digest, so a file cut
short, overwritten, holding something else, or with flipped bytes is a :class:`CheckpointError` naming the
file, never a traceback or silently different weights. Files of a format's version before checksums
(``.../1``) load with a warning.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from atmorep_coupler.errors import CheckpointError

__all__ = ["save_state", "load_state", "state_digest", "CHECKSUM_KEY", "FORMAT_KEY", "TRAINER_FORMAT", "WEIGHTS_FORMAT",
           "RNG_FORMAT"]

FORMAT_KEY = "format"
CHECKSUM_KEY = "sha256"
TRAINER_FORMAT = "atmorep_coupler.trainer/2"
"""A trainer checkpoint (``training/trainer.py``): model, optimiser, schedule, RNG, config, statistics."""
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
