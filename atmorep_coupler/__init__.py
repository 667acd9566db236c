"""atmorep_coupler: the AtmoRep multiformer as a step-able Earth-system model component.

The data flows one way, and the sub-packages follow it:

``data`` (ERA5-layout zarr, sampler, tokens) -> ``model`` (masking, multiformer, ensemble tail,
losses) -> ``training`` (loop, Ray Train) -> checkpoint -> ``component`` (BMI, AtmoRepComponent)
-> ``coupling`` (driver, exchanges through ``regrid``, outputs, restarts).

Heavy dependencies (torch, ray, jax) are imported by the sub-packages that need them, not here.
"""

from __future__ import annotations

import os as _os

# Ray reads these when it is imported or started. Loopback-only listeners and no usage reporting
# are the right defaults for a library that also runs on laptops and in CI; users can override.
for _key, _value in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
}.items():
    _os.environ.setdefault(_key, _value)

from atmorep_coupler.errors import (  # noqa: E402
    AtmoRepError,
    CheckpointError,
    ComponentError,
    ConfigError,
    DataError,
    RegridError,
    UnitError,
)

__version__ = "0.1.0"

_LAZY = {
    "open_store": "atmorep_coupler.data.store",
    "ERA5Store": "atmorep_coupler.data.store",
    "Regridder": "atmorep_coupler.regrid",
    "Component": "atmorep_coupler.component",
    "AtmoRepComponent": "atmorep_coupler.component.atmorep",
}


def __getattr__(name: str):
    """Import the public API lazily so ``import atmorep_coupler`` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atmorep_coupler' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AtmoRepError",
    "CheckpointError",
    "ComponentError",
    "ConfigError",
    "DataError",
    "RegridError",
    "UnitError",
    *_LAZY,
]
