"""Spectral resolutions (``"T21"``) and the size of the Gaussian grid each runs on, without JAX.

Shared by the dinosaur model (:mod:`.held_suarez`) and the coarse conditioning of training
(:mod:`.conditioning`), which must agree on the classical model's grid but must not import JAX.
"""

from __future__ import annotations

import math

from atmorep_coupler.errors import ConfigError

__all__ = ["truncation", "gaussian_latitudes"]


def truncation(resolution: str, *, what: str = "resolution") -> int:
    """Maximum total wavenumber N of a ``"T<N>"`` resolution string (N >= 5)."""
    text = str(resolution).strip().upper()
    if not (text.startswith("T") and text[1:].isdigit() and int(text[1:]) >= 5):
        raise ConfigError(f"{what}: expected 'T<N>' with N >= 5 (e.g. 'T15', 'T21', 'T42'), got {resolution!r}")
    return int(text[1:])


def gaussian_latitudes(n: int) -> int:
    """Latitudes of the quadratic (alias-free) Gaussian grid of truncation T<n>: the smallest even
    ``nlat >= (3n + 1) / 2``; the grid has ``2 nlat`` longitudes (T15: 24 x 48, T21: 32 x 64, T42: 64 x 128)."""
    return 2 * math.ceil((3 * n + 1) / 4)
