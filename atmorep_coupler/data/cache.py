"""Where generated data and compilation caches live, shared by every checkout on the machine."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$ATMOREP_COUPLER_CACHE``, else ``$XDG_CACHE_HOME/atmorep_coupler``, else
    ``~/.cache/atmorep_coupler``."""
    if os.environ.get("ATMOREP_COUPLER_CACHE"):
        return Path(os.environ["ATMOREP_COUPLER_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "atmorep_coupler"
    return Path.home() / ".cache" / "atmorep_coupler"
