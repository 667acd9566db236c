"""Reference grids and spherical harmonics for the spectral tests, from numpy and scipy only."""

from __future__ import annotations

import numpy as np
from scipy import special


def regular_latitudes(nlat: int) -> np.ndarray:
    """Cell centres of ``nlat`` equal bands from pole to pole, north first."""
    return 90.0 - 180.0 * (np.arange(nlat) + 0.5) / nlat


def gaussian_latitudes(nlat: int) -> np.ndarray:
    """Gauss-Legendre latitudes, north first."""
    return np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(nlat)[0]))[::-1]


def real_harmonic(n: int, m: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Re Y_nm from scipy, times √2 for m > 0: mean square 1/(4π) on the sphere."""
    theta, phi = np.deg2rad(90.0 - lat)[:, None], np.deg2rad(lon)[None, :]
    y = special.sph_harm_y(n, m, theta, phi) if hasattr(special, "sph_harm_y") else special.sph_harm(m, n, phi, theta)
    return np.real(y) * (np.sqrt(2.0) if m else 1.0)
