"""ESMF/SCRIP weight files: read (ESMF_RegridWeightGen, xESMF, ours) and write (ESMF layout).

Layout (ESMF "offline" format, netCDF-3 or netCDF-4): dimensions ``n_a, n_b, n_s, nv_a, nv_b``;
``row``/``col`` (1-based destination/source index), ``S``; per-cell ``xc/yc`` (centres),
``xv/yv`` (corners), ``mask``, ``area``, ``frac`` with suffix ``_a`` (source) or ``_b``
(destination); ``src_grid_dims``/``dst_grid_dims`` = ``[nx, ny]``; cells flattened x (longitude)
fastest. xESMF writes only ``S``, ``col``, ``row``; such files load too, and their fractions are
derived from the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import sphere
from atmorep_coupler.regrid.grids import Grid
from atmorep_coupler.regrid.weights import RegridWeights

#: ESMF's ``ESMF_regrid_method`` attribute for each method name of this package, and back.
ESMF_METHOD_NAMES = {
    "bilinear": "Bilinear",
    "conservative": "First-order Conservative",
    "conservative_normed": "First-order Conservative",
    "nearest_s2d": "Nearest source to destination",
    "nearest_d2s": "Nearest destination to source",
    "patch": "Higher-order Patch",
}
_NORMALIZATION = {"conservative": "destarea", "conservative_normed": "fracarea"}
#: Largest chord distance (about 0.006 degrees) at which file and grid centres count as equal;
#: allows centres stored in single precision or in radians.
CENTRE_TOLERANCE = 1e-4


@dataclass
class WeightFile:
    """Contents of a weight file; optional per-cell arrays are None when the file lacks them."""

    path: Path
    row: np.ndarray  # 0-based destination index
    col: np.ndarray  # 0-based source index
    S: np.ndarray
    method: str | None
    n_a: int | None = None
    n_b: int | None = None
    src_grid_dims: np.ndarray | None = None
    dst_grid_dims: np.ndarray | None = None
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)

    def to_weights(self, src: Grid, dst: Grid) -> RegridWeights:
        """Check that the file fits ``src``/``dst`` and return the weights as a :class:`RegridWeights`."""
        check_matches(self, src, dst)
        cells = self.cells
        frac_b = cells.get("frac_b")
        if frac_b is None and self.method == "conservative":
            # DSTAREA rows sum to the covered fraction (xESMF files carry no frac_b).
            frac_b = np.bincount(self.row, weights=self.S, minlength=dst.size)
        return RegridWeights.from_triplets(
            self.row,
            self.col,
            self.S,
            src_shape=src.shape,
            dst_shape=dst.shape,
            method=self.method or "unknown",
            frac_a=cells.get("frac_a"),
            frac_b=frac_b,
            area_a=cells.get("area_a"),
            area_b=cells.get("area_b"),
        )


def read_weight_file(path: str | Path) -> WeightFile:
    """Read an ESMF/SCRIP or xESMF weight file (netCDF-3 or netCDF-4)."""
    import netCDF4

    path = Path(path)
    if not path.exists():
        raise RegridError(f"weight file {path} does not exist")
    try:
        nc = netCDF4.Dataset(path)
    except OSError as exc:
        raise RegridError(f"weight file {path} is not a readable netCDF file ({exc})") from exc
    with nc:
        nc.set_auto_mask(False)
        missing = [name for name in ("S", "row", "col") if name not in nc.variables]
        if missing:
            raise RegridError(f"weight file {path} lacks the variable(s) {missing}; an ESMF/SCRIP file has S, row, col")
        S = np.asarray(nc["S"][:], dtype=np.float64).reshape(-1)
        row = np.asarray(nc["row"][:], dtype=np.int64).reshape(-1) - 1
        col = np.asarray(nc["col"][:], dtype=np.int64).reshape(-1) - 1
        dims = nc.dimensions
        cells = {}
        for name in ("xc_a", "yc_a", "xc_b", "yc_b", "mask_a", "mask_b", "area_a", "area_b", "frac_a", "frac_b"):
            if name in nc.variables:
                values = np.asarray(nc[name][:], dtype=np.float64)
                if name[0] in "xy" and getattr(nc[name], "units", "degrees").lower().startswith("rad"):
                    values = np.rad2deg(values)
                cells[name] = values
        attrs = {key: nc.getncattr(key) for key in nc.ncattrs()}
        return WeightFile(
            path=path,
            row=row,
            col=col,
            S=S,
            method=_method_from_attrs(attrs),
            n_a=len(dims["n_a"]) if "n_a" in dims else None,
            n_b=len(dims["n_b"]) if "n_b" in dims else None,
            src_grid_dims=np.asarray(nc["src_grid_dims"][:]) if "src_grid_dims" in nc.variables else None,
            dst_grid_dims=np.asarray(nc["dst_grid_dims"][:]) if "dst_grid_dims" in nc.variables else None,
            cells=cells,
            attrs=attrs,
        )


def _method_from_attrs(attrs: dict) -> str | None:
    esmf = str(attrs.get("ESMF_regrid_method", ""))
    if esmf == "First-order Conservative":
        return "conservative_normed" if str(attrs.get("normalization", "")).lower() == "fracarea" else "conservative"
    for name, esmf_name in ESMF_METHOD_NAMES.items():
        if esmf == esmf_name:
            return name
    xesmf = attrs.get("regrid_method")  # xESMF's Regridder.to_netcdf
    return str(xesmf) if xesmf else None


def check_matches(wf: WeightFile, src: Grid, dst: Grid) -> None:
    """Raise :class:`RegridError` unless sizes, grid dims and centres in ``wf`` fit ``src``/``dst``."""
    for side, grid, n, grid_dims, ref in (
        ("source", src, wf.n_a, wf.src_grid_dims, wf.col),
        ("destination", dst, wf.n_b, wf.dst_grid_dims, wf.row),
    ):
        if n is not None and n != grid.size:
            raise RegridError(
                f"weight file {wf.path}: made for a {side} grid of {n} cells, but the {side} grid has "
                f"{grid.shape} = {grid.size} cells; regenerate the weights for these grids"
            )
        ny, nx = grid.shape
        if grid_dims is not None and len(grid_dims) == 2 and tuple(int(v) for v in grid_dims) != (nx, ny):
            raise RegridError(
                f"weight file {wf.path}: {side} grid dims (nx, ny) = {tuple(int(v) for v in grid_dims)}, "
                f"the {side} grid has (nx, ny) = {(nx, ny)}"
            )
        if len(ref) and (ref.min() < 0 or ref.max() >= grid.size):
            raise RegridError(
                f"weight file {wf.path}: {side} indices run from {ref.min() + 1} to {ref.max() + 1} (1-based), "
                f"outside the {grid.size} cells of the {side} grid"
            )
    for side, grid, suffix in (("source", src, "a"), ("destination", dst, "b")):
        lat, lon = wf.cells.get(f"yc_{suffix}"), wf.cells.get(f"xc_{suffix}")
        if lat is None or lon is None:
            continue
        chord = np.linalg.norm(sphere.lonlat_to_xyz(lon, lat) - grid.center_xyz.reshape(-1, 3), axis=-1)
        bad = np.flatnonzero(chord > CENTRE_TOLERANCE)
        if len(bad):
            k = int(bad[0])
            raise RegridError(
                f"weight file {wf.path}: {len(bad)} {side} cell centres differ from the {side} grid; first at "
                f"flat index {k}: file (lat, lon) = ({lat[k]:.6f}, {lon[k]:.6f}), grid = "
                f"({grid.center_lat.ravel()[k]:.6f}, {grid.center_lon.ravel()[k]:.6f}). Files are flattened "
                "longitude fastest; check the latitude order (lat_order='ascending' vs 'descending') and the "
                "longitude origin of the grid"
            )


def write_weight_file(
    path: str | Path,
    weights: RegridWeights,
    src: Grid,
    dst: Grid,
    *,
    format: str = "NETCDF4_CLASSIC",
    attrs: dict[str, object] | None = None,
) -> None:
    """Write ``weights`` in ESMF's layout with areas, fractions, masks, centres and corners.

    ``format``: ``"NETCDF4_CLASSIC"`` (compressed), ``"NETCDF4"``, ``"NETCDF3_64BIT_OFFSET"`` or
    ``"NETCDF3_CLASSIC"`` (what ESMF writes; readable by every netCDF library).
    """
    import netCDF4

    row, col, S = weights.triplets()
    compress = {"zlib": True, "complevel": 4, "shuffle": True} if format.startswith("NETCDF4") else {}
    method = weights.method.split("+")[0]
    with netCDF4.Dataset(path, "w", format=format) as nc:
        nc.setncatts(
            {
                "title": "atmorep_coupler regridding weights",
                "normalization": _NORMALIZATION.get(method, "N/A"),
                "map_method": "Conservative remapping" if method.startswith("conservative") else "Bilinear remapping",
                "ESMF_regrid_method": ESMF_METHOD_NAMES.get(method, method),
                "conventions": "NCAR-CSM",
                "domain_a": src.name,
                "domain_b": dst.name,
                "atmorep_coupler_method": weights.method,
                **(attrs or {}),
            }
        )
        for name, size in (
            ("n_a", src.size),
            ("n_b", dst.size),
            ("n_s", len(S)),
            ("nv_a", 4),
            ("nv_b", 4),
            ("num_wgts", 1),
            ("src_grid_rank", 2),
            ("dst_grid_rank", 2),
        ):
            nc.createDimension(name, size)

        def put(name, dims, values, dtype="f8", units=None):
            var = nc.createVariable(name, dtype, dims, **compress)
            if units is not None:
                var.units = units
            var[:] = values

        put("src_grid_dims", ("src_grid_rank",), [src.shape[1], src.shape[0]], "i4")
        put("dst_grid_dims", ("dst_grid_rank",), [dst.shape[1], dst.shape[0]], "i4")
        area_a = weights.area_a if weights.area_a is not None else src.area.ravel()
        area_b = weights.area_b if weights.area_b is not None else dst.area.ravel()
        for suffix, grid, area, frac in (("a", src, area_a, weights.frac_a), ("b", dst, area_b, weights.frac_b)):
            n, nv = f"n_{suffix}", f"nv_{suffix}"
            put(f"yc_{suffix}", (n,), grid.center_lat.ravel(), units="degrees")
            put(f"xc_{suffix}", (n,), grid.center_lon.ravel(), units="degrees")
            put(f"yv_{suffix}", (n, nv), grid.corner_lat.reshape(-1, 4), units="degrees")
            put(f"xv_{suffix}", (n, nv), grid.corner_lon.reshape(-1, 4), units="degrees")
            put(f"mask_{suffix}", (n,), grid.mask.ravel().astype(np.int32), "i4", units="unitless")
            put(f"area_{suffix}", (n,), area, units="square radians")
            put(f"frac_{suffix}", (n,), frac, units="unitless")
        put("col", ("n_s",), col + 1, "i4")
        put("row", ("n_s",), row + 1, "i4")
        put("S", ("n_s",), S)
