"""Shared fixtures for the regridding tests: the ESMF reference directory and analytic fields."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

#: ESMF 8.8.1 reference cases, test data of the repository (data/esmf-weights/README.md).
REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "esmf-weights"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference folder; its absence is a failure (the evidence must travel with the code)."""
    if not (REFERENCE_DIR / "summary.json").exists():
        pytest.fail(f"ESMF reference files missing from {REFERENCE_DIR}: restore them from git")
    return REFERENCE_DIR


def reference_field(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """The README's test field ``2 + sin(2 lat) cos(lon) + cos(lat)^2 cos(2 lon)`` (integral 8 pi)."""
    lat, lon = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    return 2 + np.sin(2 * lat) * np.cos(lon) + np.cos(lat) ** 2 * np.cos(2 * lon)


def harmonic_field(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """A smooth field of (unnormalized) real spherical harmonics, 3 + Y_3^2 + Y_5^1 + Y_4^0.

    With ``x = sin(lat) = cos(colatitude)``: ``Y_3^2 ~ (1 - x^2) x cos(2 lon)``,
    ``Y_5^1 ~ sqrt(1 - x^2) (21 x^4 - 14 x^2 + 1) sin(lon)``, ``Y_4^0 ~ 35 x^4 - 30 x^2 + 3``;
    the non-constant terms integrate to zero over the sphere.
    """
    x = np.sin(np.deg2rad(lat_deg))
    c = np.cos(np.deg2rad(lat_deg))
    lon = np.deg2rad(lon_deg)
    return (
        3.0
        + (1 - x**2) * x * np.cos(2 * lon)
        + 0.25 * c * (21 * x**4 - 14 * x**2 + 1) * np.sin(lon)
        + 0.125 * (35 * x**4 - 30 * x**2 + 3)
    )


@pytest.fixture(scope="session")
def field_f():
    """The README's reference test field as a function of (lat, lon) in degrees."""
    return reference_field


@pytest.fixture(scope="session")
def field_ylm():
    """A spherical-harmonic test field as a function of (lat, lon) in degrees."""
    return harmonic_field


def regrid_weight_gen() -> str | None:
    """Path of ESMF's ``ESMF_RegridWeightGen``: on the PATH, or in the ``ESMF_APPSDIR`` of the esmf.mk
    that ESMPy uses (``$ESMFMKFILE``, else ``<venv>/lib/esmf.mk``, which scripts/build_esmf.sh links)."""
    found = shutil.which("ESMF_RegridWeightGen")
    if found:
        return found
    for mk in (os.environ.get("ESMFMKFILE"), Path(sys.prefix) / "lib" / "esmf.mk"):
        if mk and Path(mk).is_file():
            for line in Path(mk).read_text().splitlines():
                if line.startswith("ESMF_APPSDIR="):
                    exe = Path(line.split("=", 1)[1].strip()) / "ESMF_RegridWeightGen"
                    if exe.is_file():
                        return str(exe)
    return None
