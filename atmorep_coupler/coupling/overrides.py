"""``--set KEY=VALUE`` assignments on a coupling YAML, applied before it is checked.

Shared by ``python -m atmorep_coupler.run`` and the verification, which runs a coupling YAML per start
date. KEY is a dotted path (list items by index, e.g. ``couplings.0.period``), VALUE is read as YAML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atmorep_coupler.config import clip, parse_yaml, show, to_dict
from atmorep_coupler.coupling.schema import load_coupling_config
from atmorep_coupler.errors import ConfigError

__all__ = ["load_config"]


def load_config(path: str | Path, assignments: Sequence[str] = ()) -> tuple[Any, Path]:
    """The checked coupling config of ``path`` with ``KEY=VALUE`` assignments applied, and the folder
    relative input paths of the file resolve against (as :func:`load_coupling_config`)."""
    config, base = load_coupling_config(path)
    if not assignments:
        return config, base
    mapping = to_dict(config)  # input paths of the file are absolute here
    for assignment in assignments:
        _assign(mapping, assignment, f"{path}: --set {clip(assignment)}")
    config, _ = load_coupling_config(mapping, origin=f"{path} (with --set {' '.join(map(clip, assignments))})")
    return config, base


def _assign(mapping: dict, assignment: str, where: str) -> None:
    """Set ``KEY=VALUE`` in ``mapping``: every part of KEY but the last must exist (the schema then
    rejects unknown last keys with their key path)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"{where}: expected KEY=VALUE, e.g. run.end=2000-02-01T00:00:00")
    parts = key.split(".")
    node: Any = mapping
    for depth, part in enumerate(parts):
        at = ".".join(parts[:depth]) or "the top level"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: {at} is a list of {len(node)} items; {show(part)} is not an index")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{where}: {at} is a value, not a mapping or a list")
        elif depth < len(parts) - 1 and part not in node:
            raise ConfigError(f"{where}: {at} has no key {show(part)} (keys: {', '.join(map(str, node))})")
        if depth == len(parts) - 1:
            node[part] = parse_yaml(text, f"{where}: VALUE")
        else:
            node = node[part]
