"""Optional ESMF backend: the same weights computed by ESMF itself, through ESMPy.

ESMF and ESMPy are on neither PyPI nor Debian: ``scripts/build_esmf.sh`` builds them from source
(conda-forge has them too), so this backend is used only where ESMPy is importable. Grids are
handed to ESMF as SCRIP files -- the same route as ``ESMF_RegridWeightGen`` -- so ESMF sees exactly
the centres, corners and masks of the :class:`~atmorep_coupler.regrid.grids.Grid`; the result is a
:class:`RegridWeights` like the native backend's, with ESMF's fractions. ESMF writes its log
(``PET0.ESMF_LogFile``, on errors) into :data:`LOG_DIR`, not into the working directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid.grids import Grid
from atmorep_coupler.regrid.weights import RegridWeights


#: Where ESMF writes its log file (it writes one when a call fails).
LOG_DIR = Path(tempfile.gettempdir()) / "atmorep_coupler-esmf-log"
#: Pole treatment of a global source per method: ESMF averages all nodes of the outermost row for
#: bilinear and patch (its default, and the native bilinear's pole triangles); conservative methods
#: accept no pole method (ESMF stops with rc = 6), and nearest-neighbour methods need none.
POLE_AVERAGED = ("bilinear", "patch")


def import_esmpy():
    """The ``esmpy`` module (older releases: ``ESMF``), or a :class:`RegridError` saying how to get it.

    netCDF4 is imported first: its wheel bundles its own netCDF and HDF5 libraries, and loading them
    after an ESMF built against the system's netCDF crashes the process (segmentation fault).
    """
    import netCDF4  # noqa: F401  (before esmpy, see above)

    try:
        import esmpy
    except ImportError:
        try:
            import ESMF as esmpy  # noqa: N811  (ESMPy < 8.4)
        except ImportError as exc:
            raise RegridError(
                "backend='esmf' needs ESMPy, which is on neither PyPI nor Debian: build ESMF and ESMPy from "
                "source with `bash scripts/build_esmf.sh <esmf source archive>` (no conda needed), or "
                "`conda install -c conda-forge esmpy xesmf`; or use backend='native'"
            ) from exc
    return esmpy


@contextlib.contextmanager
def _in_log_dir():
    """Run ESMF calls from inside :data:`LOG_DIR`: ESMF opens ``PET0.ESMF_LogFile`` in the working
    directory when it has something to log (an error), whatever its log settings."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(LOG_DIR)
    try:
        yield
    finally:
        os.chdir(here)


def _esmf_errors() -> str:
    """The reason behind ESMPy's "failed with rc = ...": the latest ERROR line of ESMF's log that is
    not one of the "Internal subroutine call returned Error" lines of the call stack above it."""
    reasons = []
    for log in sorted(LOG_DIR.glob("*ESMF_LogFile")):
        for line in log.read_text(errors="replace").splitlines():
            if "ERROR" in line and "Internal subroutine call returned Error" not in line:
                reasons.append(" ".join(line.split()[4:]))  # without date, time, level and PET
    return reasons[-1] if reasons else f"no ERROR line in the log in {LOG_DIR}"


def esmf_weights(src: Grid, dst: Grid, method: str) -> RegridWeights:
    """Weights from ESMF for ``method`` (pole method as :data:`POLE_AVERAGED`, ESMF defaults otherwise)."""
    esmpy = import_esmpy()
    regrid_method = {
        "bilinear": esmpy.RegridMethod.BILINEAR,
        "conservative": esmpy.RegridMethod.CONSERVE,
        "conservative_normed": esmpy.RegridMethod.CONSERVE,
        "nearest_s2d": esmpy.RegridMethod.NEAREST_STOD,
        "nearest_d2s": esmpy.RegridMethod.NEAREST_DTOS,
        "patch": esmpy.RegridMethod.PATCH,
    }[method]
    norm = esmpy.NormType.FRACAREA if method == "conservative_normed" else esmpy.NormType.DSTAREA
    pole = esmpy.PoleMethod.ALLAVG if src.is_global and method in POLE_AVERAGED else esmpy.PoleMethod.NONE
    conservative = method.startswith("conservative")
    with tempfile.TemporaryDirectory() as tmp, _in_log_dir():
        src_file, dst_file = Path(tmp) / "src.nc", Path(tmp) / "dst.nc"
        src.to_scrip(src_file)
        dst.to_scrip(dst_file)
        fields = []
        for grid, path in ((src, src_file), (dst, dst_file)):
            egrid = esmpy.Grid(
                filename=str(path),
                filetype=esmpy.FileFormat.SCRIP,
                is_sphere=grid.is_global,
                add_corner_stagger=conservative,
                add_mask=True,
                varname="grid_imask",
            )
            fields.append([esmpy.Field(egrid, staggerloc=esmpy.StaggerLoc.CENTER) for _ in range(2)])  # field, fraction
        (src_field, src_frac), (dst_field, dst_frac) = fields
        try:
            regrid = _regrid(esmpy, src_field, dst_field, src_frac, dst_frac, regrid_method, norm, pole)
        except ValueError as exc:
            raise RegridError(f"ESMF could not compute {method!r} weights ({exc}); ESMF's log: {_esmf_errors()}") from exc
        factors = regrid.get_weights_dict(deep_copy=True)
        frac_a = _flat(src_frac.data) if conservative else None
        frac_b = _flat(dst_frac.data) if conservative else None
        regrid.destroy()
    return RegridWeights.from_triplets(
        np.asarray(factors["row_dst"]) - 1,
        np.asarray(factors["col_src"]) - 1,
        np.asarray(factors["weights"]),
        src_shape=src.shape,
        dst_shape=dst.shape,
        method=method,
        frac_a=frac_a,
        frac_b=frac_b,
        area_a=src.area.ravel(),
        area_b=dst.area.ravel(),
    )


def _regrid(esmpy, src_field, dst_field, src_frac, dst_frac, regrid_method, norm, pole):
    """ESMF's sparse matrix between two fields (masked cells: mask value 0), unmapped cells allowed."""
    return esmpy.Regrid(
        src_field,
        dst_field,
        regrid_method=regrid_method,
        norm_type=norm,
        pole_method=pole,
        unmapped_action=esmpy.UnmappedAction.IGNORE,
        src_mask_values=np.array([0]),
        dst_mask_values=np.array([0]),
        src_frac_field=src_frac,
        dst_frac_field=dst_frac,
        factors=True,
    )


def _flat(data: np.ndarray) -> np.ndarray:
    """ESMPy field data are indexed ``[i, j]`` (x first); flatten x fastest like SCRIP/ESMF files."""
    return np.asarray(data).T.ravel().copy()
