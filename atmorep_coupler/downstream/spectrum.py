"""Power spectrum by total spherical wavenumber of a field on a regular latitude-longitude grid.

``f_lm = ∫ f Y*_lm dΩ`` with orthonormal spherical harmonics (``scipy.special.sph_harm_y``), by an FFT in
longitude and Fejér's first quadrature rule in colatitude on the rows' cell centres ``θ_j = (j + ½) π / N``
(exact for polynomials in ``cos θ`` of degree < N, so ``f_lm`` is exact for fields with wavenumbers
``l' < N - l``; band-area weights ``Δ sin φ`` are only second order, and
their error leaks the large-scale power into every wavenumber, swamping the small scales); the power at
``l`` is ``Σ_m |f_lm|²`` (both signs of ``m`` for a real field) divided by 4π, so summed over ``l`` it is
the field's area-mean square (Parseval). Interpolation removes power at high ``l``; a downscaling model
should restore the truth's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import sph_harm_y

from atmorep_coupler.data.sampler import row_areas

__all__ = ["fejer_weights", "power_spectrum"]


def fejer_weights(n: int) -> np.ndarray:
    """Fejér's first rule on ``θ_j = (j + ½) π / n``: weights for ``∫_0^π g(θ) sin θ dθ`` (sum 2)."""
    theta = (np.arange(n) + 0.5) * np.pi / n
    k = np.arange(1, n // 2 + 1)
    return 2.0 / n * (1.0 - 2.0 * (np.cos(2 * np.outer(theta, k)) / (4 * k**2 - 1)).sum(-1))


@lru_cache(maxsize=8)
def _legendre(latitudes: tuple[float, ...], lmax: int) -> np.ndarray:
    """``Y_lm(θ_j, 0) Δμ_j`` as ``[lmax + 1 (l), lmax + 1 (m), lat]`` (zero for m > l)."""
    lat = np.asarray(latitudes)
    theta = np.deg2rad(90.0 - lat)
    weights = fejer_weights(lat.size) if np.allclose(theta, (np.arange(lat.size) + 0.5) * np.pi / lat.size) \
        else row_areas(lat)
    l, m = np.meshgrid(np.arange(lmax + 1), np.arange(lmax + 1), indexing="ij")
    table = np.where((m <= l)[..., None], sph_harm_y(l[..., None], m[..., None], theta, 0.0).real, 0.0)
    return table * weights


def power_spectrum(field: np.ndarray, latitudes: np.ndarray, lmax: int | None = None) -> np.ndarray:
    """``field [..., lat, lon]`` -> power ``[..., lmax + 1]`` by total wavenumber (module docs). Default
    ``lmax``: ``nlon // 2 - 1``."""
    field = np.asarray(field, dtype=np.float64)
    nlon = field.shape[-1]
    lmax = nlon // 2 - 1 if lmax is None else lmax
    fourier = np.fft.rfft(field, axis=-1)[..., : lmax + 1] * (2 * np.pi / nlon)  # ∫ f e^{-imλ} dλ per row
    table = _legendre(tuple(np.asarray(latitudes, dtype=np.float64)), lmax)  # [l, m, lat]
    coeff = np.einsum("...jm,lmj->...lm", fourier, table)
    power = np.abs(coeff) ** 2
    power[..., 1:] *= 2.0  # m and -m
    return power.sum(-1) / (4 * np.pi)
