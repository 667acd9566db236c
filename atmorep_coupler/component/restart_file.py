"""Component restart files: the clock, every exchange item and a component's extra arrays in one ``.npz``.

The file format only; :meth:`Component.save_state <atmorep_coupler.component.base.Component.save_state>`
and ``load_state`` gather and apply the arrays. A restart file holds plain arrays only (read with
``allow_pickle=False``: nothing in it is run), is written to a temporary file and renamed (an interrupted
save never leaves a torn file), and records a signature of the component that wrote it (class, name,
calendar, start, time step, items), so a file of another configuration is a :class:`CheckpointError`
naming the mismatch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atmorep_coupler.errors import CheckpointError, ComponentError

__all__ = ["STATE_FORMAT", "RestartState", "read_state", "write_state"]

STATE_FORMAT = "atmorep_coupler.component-state/1"


@dataclass(frozen=True)
class RestartState:
    """What a restart file holds besides its signature."""

    elapsed: float
    """Seconds since the component's start."""
    imported: frozenset[str]
    """Inputs set since initialize (``Component.was_imported``)."""
    items: Mapping[str, np.ndarray]
    """Every exchange item's values."""
    extra: Mapping[str, np.ndarray]
    """The component's ``_restart_state()`` arrays."""


def write_state(path: str | Path, signature: Mapping[str, Any], state: RestartState, *, component: str) -> Path:
    """Write ``state`` and ``signature`` to the ``.npz`` file ``path`` (temporary file, then rename)."""
    path = Path(path)
    arrays = {f"item/{name}": np.array(values, copy=True) for name, values in state.items.items()}
    for key, value in state.extra.items():
        arrays[f"extra/{key}"] = np.asarray(value)
        if arrays[f"extra/{key}"].dtype.hasobject:
            raise ComponentError(
                f"component {component!r}: _restart_state()[{key!r}] is not a numeric array; restart files "
                "hold plain arrays only (no pickles), so convert it (e.g. json text in a numpy string)"
            )
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(
            fh, __meta__=np.array(json.dumps(dict(signature))), __elapsed__=np.array(state.elapsed, dtype=np.float64),
            __imported__=np.array(sorted(state.imported), dtype=str), **arrays,
        )
    os.replace(tmp, path)
    return path


def read_state(path: str | Path, signature: Mapping[str, Any], items: Iterable[str], *, component: str) -> RestartState:
    """The state in ``path``, whose signature must equal ``signature`` (the component it is loaded into,
    named ``component``) and which must hold ``items``; :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
        meta = json.loads(str(data.pop("__meta__")))
        elapsed = float(data.pop("__elapsed__"))
        imported = frozenset(str(name) for name in data.pop("__imported__"))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a component state file written by save_state ({exc})") from None
    for key, want in signature.items():
        if meta.get(key) != want:
            raise CheckpointError(
                f"{path}: state {key} is {meta.get(key)!r} but component {component!r} has {want!r}; "
                "load it into a component initialized with the same configuration"
            )
    return RestartState(elapsed, imported, {name: data[f"item/{name}"] for name in items},
                        {k[len("extra/"):]: v for k, v in data.items() if k.startswith("extra/")})
