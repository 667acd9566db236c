"""Optional ESMF backend: the same weights computed by ESMF itself, through ESMPy.

ESMPy is not on PyPI (it comes with ESMF from conda-forge), so this backend is used only where it
is importable. Grids are handed to ESMF as SCRIP files -- the same route as
``ESMF_RegridWeightGen`` -- so ESMF sees exactly the centres, corners and masks of the
:class:`~atmorep_coupler.regrid.grids.Grid`; the result is a :class:`RegridWeights` like the
native backend's, with ESMF's fractions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid.grids import Grid
from atmorep_coupler.regrid.weights import RegridWeights


def import_esmpy():
    """The ``esmpy`` module (older releases: ``ESMF``), or a :class:`RegridError` saying how to get it."""
    try:
        import esmpy
    except ImportError:
        try:
            import ESMF as esmpy  # noqa: N811  (ESMPy < 8.4)
        except ImportError as exc:
            raise RegridError(
                "backend='esmf' needs ESMPy, which is not on PyPI: install it with conda "
                "(conda install -c conda-forge esmpy xesmf) or use backend='native'"
            ) from exc
    return esmpy


def esmf_weights(src: Grid, dst: Grid, method: str) -> RegridWeights:
    """Weights from ESMF for ``method`` (ESMF defaults otherwise: pole 'all' on global sources)."""
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
    conservative = method.startswith("conservative")
    with tempfile.TemporaryDirectory() as tmp:
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
        regrid = esmpy.Regrid(
            src_field,
            dst_field,
            regrid_method=regrid_method,
            norm_type=norm,
            pole_method=esmpy.PoleMethod.ALLAVG if src.is_global else esmpy.PoleMethod.NONE,
            unmapped_action=esmpy.UnmappedAction.IGNORE,
            src_mask_values=np.array([0]),
            dst_mask_values=np.array([0]),
            src_frac_field=src_frac,
            dst_frac_field=dst_frac,
            factors=True,
        )
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


def _flat(data: np.ndarray) -> np.ndarray:
    """ESMPy field data are indexed ``[i, j]`` (x first); flatten x fastest like SCRIP/ESMF files."""
    return np.asarray(data).T.ravel().copy()
