"""Restart files: everything a coupled run needs to continue bit-identically.

Layout under ``<restart.dir>/<run.name>/``::

    20000102T000000/            one folder per restart, named by its model date
        components/<id>.npz     Component.save_state of each component
        coupler.json            clock, exchange and output positions (JSON)
        coupler.npz             exchange accumulators, lag buffers, output reducers (exact float64)
    latest                      name of the newest complete restart folder

Why a kill at any instant leaves a usable restart: a restart folder is written as ``.<name>.partial``
and renamed when complete, and ``latest`` is replaced atomically afterwards (``rename`` of a small
file), so ``latest`` always names a complete folder. Within a run the labels only grow and ``latest``
names the previous save of this run, so the folder a save replaces (one a resumed or restarted run
passes again) is never the one ``latest`` names; :meth:`RestartStore.save` refuses to replace that
one, and never removes a folder that is not a restart of this format. A fresh run writes a restart
at its start (before any output exists), so a run killed at any point after its first output
resumes. Partial folders and pointer files a kill left behind are removed by :meth:`RestartStore.clean`.
Restarts are taken only at synchronisation points (every component at the same time, every coupling
window closed), so the state is small and unambiguous.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from atmorep_coupler.component.native import NativeComponent
from atmorep_coupler.errors import CheckpointError

__all__ = ["RestartStore", "save_tree", "load_tree"]

_FORMAT = "atmorep_coupler.coupled-restart/1"
_LABEL = re.compile(r"^-?\d+T\d{6}$")  # the model date of a restart, e.g. 20000102T000000
_STRAY = re.compile(r"^\.(-?\d+T\d{6})(\.stale)?\.partial$")  # what a save killed half-way leaves


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
    """Read what :func:`save_tree` wrote; anything else is a :class:`CheckpointError` naming the folder."""
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        with np.load(folder / f"{name}.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{folder}: incomplete or unreadable restart ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or "tree" not in meta:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{folder}: restart format {found!r}, expected {_FORMAT!r}")

    def decode(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"__array__"}:
                if node["__array__"] not in arrays:
                    raise CheckpointError(f"{folder}: {name}.npz lacks array {node['__array__']!r}; the restart is damaged")
                return arrays[node["__array__"]]
            return {k: decode(v) for k, v in node.items()}
        if isinstance(node, list):
            return [decode(v) for v in node]
        return node

    return decode(meta["tree"])


def is_restart_folder(folder: Path) -> bool:
    """Whether ``folder`` is a complete restart of this format (the only kind of folder a save replaces)."""
    try:
        return json.loads((folder / "coupler.json").read_text()).get("format") == _FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class RestartStore:
    """The restart folders of one run (``root = <restart.dir>/<run.name>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def latest(self) -> Path | None:
        """The newest complete restart folder, or None."""
        pointer = self.root / "latest"
        if not pointer.is_file():
            return None
        try:
            label = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{pointer}: unreadable ({exc}); restore it or start the run afresh") from None
        folder = self.root / label
        if not _LABEL.match(label) or not is_restart_folder(folder):
            raise CheckpointError(f"{pointer}: points to {folder}, which is not a complete restart folder; "
                                  "write the name of a complete one into it, or start the run afresh")
        return folder

    def clean(self) -> None:
        """Remove what a killed save left behind: ``.<label>.partial`` folders and the pointer's temporary file."""
        if not self.root.is_dir():
            return
        for stray in self.root.glob(".*.partial"):
            if stray.is_dir() and _STRAY.match(stray.name):
                shutil.rmtree(stray)
            elif stray.name == ".latest.partial" and stray.is_file():
                stray.unlink()

    def save(self, label: str, coupler_state: Mapping[str, Any], components: Mapping[str, NativeComponent]) -> Path:
        """Write one restart: ``components[id].save_state(file)`` for each component, then the coupler."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".{label}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "components").mkdir(parents=True)
        for name, component in components.items():
            component.save_state(str(partial / "components" / f"{name}.npz"))
        save_tree(dict(coupler_state), partial)
        final = self.root / label
        if final.exists():  # a run passes the same time again (resumed, or started afresh over old restarts)
            self._check_replaceable(final)
            stale = self.root / f".{label}.stale.partial"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)
            os.replace(partial, final)
            shutil.rmtree(stale)
        else:
            os.replace(partial, final)
        self.point_to(label)
        return final

    def point_to(self, label: str) -> None:
        """Make ``latest`` name ``label`` in one atomic rename."""
        pointer = self.root / ".latest.partial"
        pointer.write_text(label + "\n")
        os.replace(pointer, self.root / "latest")

    def _check_replaceable(self, final: Path) -> None:
        pointer = self.root / "latest"
        if pointer.is_file() and pointer.read_text().strip() == final.name:
            raise CheckpointError(f"{final}: is the restart 'latest' names; it is never replaced (point 'latest' "
                                  "elsewhere first)")
        if not is_restart_folder(final):
            raise CheckpointError(f"{final}: exists and is not a restart folder; it is left alone. Move it, or "
                                  "give run.restart.dir another folder")

    def load(self, folder: Path, components: Mapping[str, NativeComponent]) -> dict[str, Any]:
        """Load every component's state from ``folder``; return the coupler state."""
        state = load_tree(folder)
        for name, component in components.items():
            file = folder / "components" / f"{name}.npz"
            if not file.is_file():
                raise CheckpointError(f"{folder}: no state for component {name!r}; the restart is from another run")
            component.load_state(str(file))
        return state
