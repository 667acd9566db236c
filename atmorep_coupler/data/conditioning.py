"""Coarse-model conditioning fields for training: the truth as a coarse classical model would see it.

In a coupled run the multiformer is conditioned on the state of the coarse classical model (dinosaur
Held–Suarez, :mod:`components.classical`) at the target time, regridded conservatively by the coupler
from the model's Gaussian grid to the multiformer's grid. In training no classical run exists, so the
conditioning is the truth itself, *conservatively coarsened to that Gaussian grid and back*:

    coarse(x) = R_up (R_down x)

with ``R_down`` (store grid -> Gaussian grid) and ``R_up`` (back) first-order conservative maps
(``conservative_normed``, ESMF FRACAREA; both preserve area integrals, so ``coarse`` does too). The
coarse field keeps the scales the classical model resolves and loses the finer ones -- exactly what a
conditioning on the coarse model can supply. Each time step of a window is coarsened at its own time,
so the target slice of a forecast sees the coarse truth *at the target time*.

Fields use it through the sampler's transform hook (:func:`atmorep_coupler.data.sampler.register_transform`)::

    - name: coarse_temperature
      source: temperature          # normalized with temperature's statistics
      transform: coarse:T15        # Gaussian grid of spectral truncation T15 (24 x 48)
      predicted: false

``coarse`` alone means :data:`CLASSICAL_RESOLUTION`, the classical component's default resolution.
The Gaussian grid of ``T<N>`` is dinosaur's quadratic (alias-free) grid, the one
:class:`~atmorep_coupler.data.held_suarez.HeldSuarezModel` integrates on:
``nlat = 2 ceil((3N + 1) / 4)``, ``nlon = 2 nlat`` (T15: 24 x 48, T21: 32 x 64). The weights are built
once per (store grid, resolution) and reused for every window.
"""

from __future__ import annotations

import functools

from collections.abc import Callable

import numpy as np

from atmorep_coupler.data.spectral import gaussian_latitudes, truncation
from atmorep_coupler.data.store import ERA5Store
from atmorep_coupler.regrid import GaussianGrid, LatLonGrid, Regridder

__all__ = ["CLASSICAL_RESOLUTION", "COARSE_METHOD", "COARSE_PREFIX", "classical_grid", "coarse_reader", "coarsen",
           "physical_variable"]

#: Default resolution of the classical component (``components.classical.ClassicalConfig.resolution``).
CLASSICAL_RESOLUTION = "T15"
#: The conservative map used both ways (and what a coupling YAML should use for the conditioning).
COARSE_METHOD = "conservative_normed"
#: Store variables of the coarse model's run (``coarse_temperature``, ...: :mod:`.coarse_run`).
COARSE_PREFIX = "coarse_"


def physical_variable(variable: str) -> str:
    """The quantity a (coarse-model) variable holds: ``coarse_temperature`` -> ``temperature``; others pass.
    Its CF standard name, plausible range and units are the quantity's."""
    return variable.removeprefix(COARSE_PREFIX)


def classical_grid(resolution: str = CLASSICAL_RESOLUTION) -> GaussianGrid:
    """The classical model's Gaussian grid (north first) for a ``"T<N>"`` resolution."""
    nlat = gaussian_latitudes(truncation(resolution, what="coarse conditioning resolution"))
    return GaussianGrid(nlat, 2 * nlat, lat_order="descending")


@functools.lru_cache(maxsize=8)
def _regridders(lat: bytes, lon: bytes, resolution: str) -> tuple[Regridder, Regridder]:
    """Down and up maps between a store's grid (1-D centres as bytes, hashable) and the Gaussian grid."""
    fine = LatLonGrid.from_centers(np.frombuffer(lat), np.frombuffer(lon))
    coarse = classical_grid(resolution)
    down = Regridder(fine, coarse, COARSE_METHOD, progress=False)
    up = Regridder(coarse, fine, COARSE_METHOD, progress=False)
    return down, up


def coarsen(values: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray,
            resolution: str = CLASSICAL_RESOLUTION) -> np.ndarray:
    """``R_up(R_down(values))`` for fields ``[..., lat, lon]`` on the global grid of the given centres."""
    down, up = _regridders(np.asarray(latitudes, dtype=np.float64).tobytes(),
                           np.asarray(longitudes, dtype=np.float64).tobytes(), str(resolution).upper())
    return up.apply(down.apply(np.asarray(values, dtype=np.float64))).astype(np.float32)


def coarse_reader(resolution: str = "") -> Callable[..., np.ndarray]:
    """A sampler transform (same signature as :meth:`ERA5Store.read`) returning the coarsened truth.

    The whole globe of the requested times and levels is read and coarsened (the maps need it), then
    the window's rows and (wrapping) columns are taken from the result.
    """
    resolution = resolution or CLASSICAL_RESOLUTION
    classical_grid(resolution)  # fail at configuration time on a bad resolution

    def read(store: ERA5Store, var: str, *, time=None, levels=None, lat=None, lon=None, units=None) -> np.ndarray:
        name = store.resolve(var)
        values = store.read(name, time=time, levels=levels, units=units)
        if "latitude" not in store.dataset[name].dims:
            return values  # a global series has nothing to coarsen
        store.require_global("coarse conditioning")
        coarse = coarsen(values, store.latitudes, store.longitudes, resolution)
        if lat is None and lon is None:
            return coarse
        rows = np.arange(store.latitudes.size)[lat if lat is not None else slice(None)]
        cols = np.arange(store.longitudes.size) if lon is None else np.mod(np.asarray(lon), store.longitudes.size)
        return coarse[..., rows[:, None], cols[None, :]]

    return read
