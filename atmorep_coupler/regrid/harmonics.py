"""Spherical-harmonic transforms of fields on global latitude-longitude grids: coefficients, power by
total wavenumber, and the large-scale (triangularly truncated) part of a field.

``f_lm = ∫ f Y*_lm dΩ`` with orthonormal harmonics ``Y_lm = P_l^m(cos θ) e^{imλ} / √(2π)``
(``∫ P_l^m(μ)² dμ = 1``): an FFT in longitude, then a quadrature in latitude that is exact for polynomials
in ``μ = cos θ`` of the degrees a truncated transform needs:

- Gaussian latitudes (the classical model's grid): Gauss–Legendre, exact for degree < 2N;
- equally spaced cell-centre rows ``θ_j = (j + ½) π / N`` (the data's grid): Fejér's first rule, exact for
  degree < N, so ``f_lm`` is exact for fields with wavenumbers ``l' < N - l``. (Band areas ``Δ sin φ`` are only
  second-order accurate; their error leaks the large-scale power into every wavenumber and swamps the small
  scales.)

Other latitude sets are refused rather than transformed approximately. Rows may run north or south first;
longitudes must be equally spaced from any origin (an offset changes phases, not power or truncation).
The power at ``l`` is ``Σ_m |f_lm|²`` (both signs of ``m``) divided by 4π, so summed over ``l`` it is the
area-mean square of the resolved field (Parseval).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from atmorep_coupler.errors import DataError

__all__ = ["coefficients", "fejer_weights", "low_pass", "power_spectrum", "quadrature_weights", "synthesis"]


def fejer_weights(n: int) -> np.ndarray:
    """Fejér's first rule on ``θ_j = (j + ½) π / n``: weights for ``∫_0^π g(θ) sin θ dθ`` (sum 2)."""
    theta = (np.arange(n) + 0.5) * np.pi / n
    k = np.arange(1, n // 2 + 1)
    return 2.0 / n * (1.0 - 2.0 * (np.cos(2 * np.outer(theta, k)) / (4 * k**2 - 1)).sum(-1))


def quadrature_weights(latitudes: np.ndarray) -> np.ndarray:
    """Weights ``w_j`` with ``Σ_j w_j g(μ_j) ≈ ∫_{-1}^{1} g(μ) dμ`` for the rows ``latitudes`` (degrees, either
    order): Gauss–Legendre on Gaussian latitudes, Fejér on equally spaced cell centres; anything else is a
    :class:`DataError`."""
    lat = np.asarray(latitudes, dtype=np.float64)
    n = lat.size
    nodes, gauss = np.polynomial.legendre.leggauss(n)
    mu = np.sin(np.deg2rad(lat))
    order = np.argsort(mu)  # Gauss-Legendre nodes run south to north
    if np.allclose(mu[order], nodes, atol=1e-9):
        weights = np.empty(n)
        weights[order] = gauss
        return weights
    theta = np.deg2rad(90.0 - lat)
    centres = (np.arange(n) + 0.5) * np.pi / n
    if np.allclose(theta, centres, atol=1e-9):
        return fejer_weights(n)
    if np.allclose(theta[::-1], centres, atol=1e-9):
        return fejer_weights(n)[::-1]
    raise DataError(
        f"spherical transform: {n} latitudes {lat[0]:g} .. {lat[-1]:g} are neither Gaussian nor equally spaced "
        "cell centres from pole to pole; regrid the field to one of those grids first"
    )


@lru_cache(maxsize=16)
def _legendre(latitudes: tuple[float, ...], lmax: int) -> np.ndarray:
    """Orthonormal ``P_l^m(sin φ_j)`` as ``[m, l, lat]`` (zero for l < m), by the standard stable recursion."""
    mu = np.sin(np.deg2rad(np.asarray(latitudes)))
    root = np.sqrt(1.0 - mu**2)
    p = np.zeros((lmax + 1, lmax + 1, mu.size))
    diagonal = np.full(mu.size, np.sqrt(0.5))
    for m in range(lmax + 1):  # O(lmax²) rows of the table, each vectorised over latitude
        if m > 0:
            diagonal = np.sqrt((2 * m + 1) / (2 * m)) * root * diagonal
        p[m, m] = diagonal
        if m + 1 <= lmax:
            p[m, m + 1] = np.sqrt(2 * m + 3) * mu * diagonal
        for n in range(m + 2, lmax + 1):
            a = np.sqrt((4 * n * n - 1) / (n * n - m * m))
            b = np.sqrt(((n - 1) ** 2 - m * m) / (4 * (n - 1) ** 2 - 1))
            p[m, n] = a * (mu * p[m, n - 1] - b * p[m, n - 2])
    return p


def _check(field: np.ndarray, latitudes: np.ndarray, lmax: int) -> None:
    nlat, nlon = field.shape[-2:]
    if np.asarray(latitudes).size != nlat:
        raise DataError(f"spherical transform: {np.asarray(latitudes).size} latitudes for fields with {nlat} rows")
    if not 0 <= lmax < nlat or lmax > nlon // 2:
        raise DataError(f"spherical transform: truncation T{lmax} is out of range for a {nlat} x {nlon} grid")


def coefficients(field: np.ndarray, latitudes: np.ndarray, lmax: int) -> np.ndarray:
    """``field [..., lat, lon]`` -> complex ``f_lm`` as ``[..., m, l]`` for ``0 <= m <= l <= lmax``
    (zero for l < m; the coefficients of negative ``m`` are the conjugates)."""
    field = np.asarray(field, dtype=np.float64)
    _check(field, latitudes, lmax)
    nlon = field.shape[-1]
    fourier = np.fft.rfft(field, axis=-1)[..., : lmax + 1] * (np.sqrt(2 * np.pi) / nlon)  # ∫ f e^{-imλ} dλ / √2π
    table = _legendre(tuple(np.asarray(latitudes, dtype=np.float64)), lmax)
    return np.einsum("...jm,mlj,j->...ml", fourier, table, quadrature_weights(latitudes))


def synthesis(coeffs: np.ndarray, latitudes: np.ndarray, nlon: int) -> np.ndarray:
    """Inverse of :func:`coefficients`: ``[..., m, l]`` -> the real field ``[..., lat, nlon]``."""
    lmax = coeffs.shape[-1] - 1
    table = _legendre(tuple(np.asarray(latitudes, dtype=np.float64)), lmax)
    fourier = np.einsum("...ml,mlj->...jm", coeffs, table) / np.sqrt(2 * np.pi)  # Σ_l f_lm P_l^m / √2π
    spectrum = np.zeros((*fourier.shape[:-1], nlon // 2 + 1), dtype=np.complex128)
    spectrum[..., : lmax + 1] = fourier * nlon
    return np.fft.irfft(spectrum, n=nlon, axis=-1)


def low_pass(field: np.ndarray, latitudes: np.ndarray, lmax: int) -> np.ndarray:
    """The large-scale part of ``field [..., lat, lon]``: its harmonics of total wavenumber ``l <= lmax``
    (triangular truncation T``lmax``), on the same grid."""
    return synthesis(coefficients(field, latitudes, lmax), latitudes, np.shape(field)[-1])


def power_spectrum(field: np.ndarray, latitudes: np.ndarray, lmax: int) -> np.ndarray:
    """``field [..., lat, lon]`` -> power ``[..., lmax + 1]`` by total wavenumber (module docs)."""
    power = np.abs(coefficients(field, latitudes, lmax)) ** 2
    power[..., 1:, :] *= 2.0  # m and -m
    return power.sum(axis=-2) / (4 * np.pi)
