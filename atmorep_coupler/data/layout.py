"""The ERA5 layout's shared vocabulary, below both the store and its statistics.

Variable aliases (ERA5 short names onto ARCO-ERA5 names) and quiet zarr access are needed by
:mod:`.store` (which opens stores) and by :mod:`.normalization` (statistics kept with a store); they
live here so that neither of the two imports the other's module for them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["ALIASES", "canonical_name", "quiet_zarr"]

#: ERA5 short names (and a few common spellings) -> canonical ARCO-ERA5 variable names.
ALIASES: dict[str, str] = {
    "vo": "vorticity",
    "d": "divergence",
    "t": "temperature",
    "z": "geopotential",
    "u": "u_component_of_wind",
    "v": "v_component_of_wind",
    "q": "specific_humidity",
    "w": "vertical_velocity",
    "r": "relative_humidity",
    "sst": "sea_surface_temperature",
    "tisr": "toa_incident_solar_radiation",
    "sp": "surface_pressure",
    "msl": "mean_sea_level_pressure",
    "t2m": "2m_temperature",
    "2t": "2m_temperature",
    "u10": "10m_u_component_of_wind",
    "10u": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "10v": "10m_v_component_of_wind",
    "siconc": "sea_ice_cover",
    "ci": "sea_ice_cover",
    "lsm": "land_sea_mask",
    "co2": "co2_equivalent",
}


def canonical_name(name: str) -> str:
    """Map an ERA5 short name (``t``, ``vo``, ...) to its ARCO-ERA5 name; other names pass."""
    return ALIASES.get(name, name)


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Silence zarr's warning that consolidated metadata is not (yet) part of the v3 spec: harmless
    for these stores, and repeated on every open it would bury the messages that matter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield
