"""ERA5-layout data: open stores, normalization statistics, and the embedded default dataset.

``store`` and ``normalization`` need only numpy/xarray/zarr. The default-data generator
(``default``, ``held_suarez``) imports JAX and dinosaur, so it is imported only when used:
``python -m atmorep_coupler.data make-default``.
"""

from __future__ import annotations

from atmorep_coupler.data.normalization import (
    Normalization,
    load_normalization,
    month_index,
    month_position,
)
from atmorep_coupler.data.statistics import compute_normalization
from atmorep_coupler.data.store import ALIASES, ERA5Store, canonical_name, open_store

__all__ = [
    "ALIASES",
    "ERA5Store",
    "Normalization",
    "canonical_name",
    "compute_normalization",
    "load_normalization",
    "month_index",
    "month_position",
    "open_store",
]
