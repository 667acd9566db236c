"""Restart files: everything a coupled run needs to continue bit-identically.

Layout under ``<restart.dir>/<run.name>/``::

    20000102T000000/            one folder per restart, named by its model date
        components/<id>.npz     Component.save_state of each component
        coupler.json            clock, exchange and output positions (JSON)
        coupler.npz             exchange accumulators, lag buffers, output reducers (exact float64)
    latest                      name of the newest complete restart folder

A restart folder is written as ``.<name>.partial`` and renamed when complete, and ``latest`` is
replaced atomically afterwards, so a run killed while writing a restart leaves the previous one as
``latest``. Restarts are taken only at synchronisation points (every component at the same time,
every coupling window closed), so the state is small and unambiguous.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from atmorep_coupler.errors import CheckpointError

__all__ = ["RestartStore", "save_tree", "load_tree"]

_FORMAT = "atmorep_coupler.coupled-restart/1"


def save_tree(tree: Any, folder: Path, name: str = "coupler") -> None:
    """Write a nested tree of dicts, lists, scalars and numpy arrays as ``name.json`` + ``name.npz``.

    Arrays go to the npz (bit for bit, no pickling); the JSON keeps the structure with
    ``{"__array__": key}`` placeholders.
    """
    arrays: dict[str, np.ndarray] = {}

    def encode(node: Any, path: str) -> Any:
        if isinstance(node, np.ndarray):
            arrays[path] = node
            return {"__array__": path}
        if isinstance(node, Mapping):
            return {str(k): encode(v, f"{path}/{k}") for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [encode(v, f"{path}/{i}") for i, v in enumerate(node)]
        if isinstance(node, np.generic):
            return node.item()
        return node

    structure = encode(tree, "")
    with open(folder / f"{name}.npz", "wb") as fh:
        np.savez(fh, **arrays)
    (folder / f"{name}.json").write_text(json.dumps({"format": _FORMAT, "tree": structure}, indent=1))


def load_tree(folder: Path, name: str = "coupler") -> Any:
    """Read what :func:`save_tree` wrote."""
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        with np.load(folder / f"{name}.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: incomplete or unreadable restart ({exc})") from None
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{folder}: restart format {meta.get('format')!r}, expected {_FORMAT!r}")

    def decode(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"__array__"}:
                return arrays[node["__array__"]]
            return {k: decode(v) for k, v in node.items()}
        if isinstance(node, list):
            return [decode(v) for v in node]
        return node

    return decode(meta["tree"])


class RestartStore:
    """The restart folders of one run (``root = <restart.dir>/<run.name>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def latest(self) -> Path | None:
        """The newest complete restart folder, or None."""
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        folder = self.root / pointer.read_text().strip()
        if not (folder / "coupler.json").is_file():
            raise CheckpointError(f"{pointer}: points to {folder}, which is not a complete restart folder")
        return folder

    def save(self, label: str, coupler_state: Mapping[str, Any], components: Mapping[str, Any]) -> Path:
        """Write one restart: ``components[id].save_state(file)`` for each component, then the coupler."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{label}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "components").mkdir(parents=True)
        for name, component in components.items():
            component.save_state(str(partial / "components" / f"{name}.npz"))
        save_tree(dict(coupler_state), partial)
        final = self.root / label
        if final.exists():  # a resumed run passes the same point again; its content is identical
            shutil.rmtree(final)
        os.replace(partial, final)
        pointer = self.root / ".latest.partial"
        pointer.write_text(label + "\n")
        os.replace(pointer, self.root / "latest")
        return final

    def load(self, folder: Path, components: Mapping[str, Any]) -> dict[str, Any]:
        """Load every component's state from ``folder``; return the coupler state."""
        for name, component in components.items():
            file = folder / "components" / f"{name}.npz"
            if not file.is_file():
                raise CheckpointError(f"{folder}: no state for component {name!r}; the restart is from another run")
            component.load_state(str(file))
        return load_tree(folder)
