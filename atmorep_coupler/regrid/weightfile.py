"""Weight files in the three layouts in use: ESMF's, SCRIP's (CDO, OASIS3-MCT) and xESMF's.

The same sparse matrix under different names. Cells are flattened x (longitude) fastest in all
three; indices are 1-based in the files; ``*_grid_dims`` are ``[nx, ny]``.

* **ESMF** (``ESMF_RegridWeightGen``, ``conventions = "NCAR-CSM"``): ``S``, ``row`` (destination),
  ``col`` (source) over dimension ``n_s``; per cell ``xc/yc`` (centres), ``xv/yv`` (corners),
  ``mask``, ``area``, ``frac`` with suffix ``_a`` (source) or ``_b`` (destination), in degrees.
* **SCRIP** (``cdo gen*``, OASIS ``rmp_*`` files, ``conventions = "SCRIP"``): ``remap_matrix``
  ``(num_links, num_wgts)``, ``dst_address``, ``src_address``; per cell ``{src,dst}_grid_center_lat``
  and ``_lon``, ``_corner_lat/_lon``, ``_imask``, ``_area``, ``_frac``, angles in radians;
  ``map_method`` and ``normalization`` say what the weights are.
* **xESMF** (``xesmf.Regridder.to_netcdf``): only ``S``, ``col``, ``row``; fractions are derived
  from the weights.

:func:`read_weight_file` detects the layout from the variables; :func:`write_weight_file` writes
any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import sphere
from atmorep_coupler.regrid.grids import Grid
from atmorep_coupler.regrid.weights import RegridWeights

#: The layouts :func:`write_weight_file` writes and :func:`read_weight_file` recognises.
LAYOUTS = ("esmf", "scrip", "xesmf")
#: The variables that identify each layout.
LAYOUT_VARIABLES = {"esmf": ("S", "row", "col"), "scrip": ("remap_matrix", "src_address", "dst_address")}
#: ESMF's ``ESMF_regrid_method`` attribute for each method name of this package, and back.
ESMF_METHOD_NAMES = {
    "bilinear": "Bilinear",
    "conservative": "First-order Conservative",
    "conservative_normed": "First-order Conservative",
    "nearest_s2d": "Nearest source to destination",
    "nearest_d2s": "Nearest destination to source",
    "patch": "Higher-order Patch",
}
#: SCRIP's ``map_method`` (the spelling CDO writes and reads) for each method of this package.
SCRIP_METHOD_NAMES = {
    "bilinear": "Bilinear remapping",
    "conservative": "Conservative remapping",
    "conservative_normed": "Conservative remapping",
    "nearest_s2d": "Nearest neighbor",
    "nearest_d2s": "Nearest destination to source",
    "patch": "Higher-order patch",
}
_NORMALIZATION = {"conservative": "destarea", "conservative_normed": "fracarea"}
#: Per-cell variables: the name used in :attr:`WeightFile.cells` (ESMF's) and SCRIP's, by side.
_SCRIP_CELLS = {
    f"{esmf}_{suffix}": f"{side}_grid_{scrip}"
    for suffix, side in (("a", "src"), ("b", "dst"))
    for esmf, scrip in (
        ("yc", "center_lat"),
        ("xc", "center_lon"),
        ("yv", "corner_lat"),
        ("xv", "corner_lon"),
        ("mask", "imask"),
        ("area", "area"),
        ("frac", "frac"),
    )
}
_CELL_NAMES = ("xc_a", "yc_a", "xc_b", "yc_b", "mask_a", "mask_b", "area_a", "area_b", "frac_a", "frac_b")
#: Largest chord distance (about 0.006 degrees) at which file and grid centres count as equal;
#: allows centres stored in single precision or in radians.
CENTRE_TOLERANCE = 1e-4


@dataclass
class WeightFile:
    """Contents of a weight file; optional per-cell arrays are None when the file lacks them.

    ``cells`` holds the per-cell arrays under ESMF's names (``yc_a``, ``frac_b``, ...) whatever the
    layout, angles in degrees; ``layout`` is ``"esmf"``, ``"scrip"`` or ``"xesmf"``.
    """

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
    layout: str = "esmf"

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


def detect_layout(variables, path: str | Path = "weight file") -> str:
    """``"esmf"``, ``"scrip"`` or ``"xesmf"`` from the names of a file's variables."""
    names = set(variables)
    if set(LAYOUT_VARIABLES["scrip"]) <= names:
        return "scrip"
    if set(LAYOUT_VARIABLES["esmf"]) <= names:
        return "esmf" if {"yc_b", "frac_b", "src_grid_dims"} & names else "xesmf"  # xESMF: the weights only
    raise RegridError(
        f"weight file {path} is in no known layout: ESMF and xESMF files have the variables S, row, col; "
        f"SCRIP files (CDO, OASIS) have remap_matrix, src_address, dst_address. Variables found: {sorted(names)}"
    )


def read_weight_file(path: str | Path) -> WeightFile:
    """Read an ESMF, SCRIP (CDO, OASIS) or xESMF weight file (netCDF-3 or netCDF-4)."""
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
        layout = detect_layout(nc.variables, path)
        attrs = {key: nc.getncattr(key) for key in nc.ncattrs()}
        names = _SCRIP_CELLS if layout == "scrip" else {name: name for name in _CELL_NAMES}
        cells = {}
        for name in _CELL_NAMES:
            if names[name] in nc.variables:
                var = nc[names[name]]
                values = np.asarray(var[:], dtype=np.float64)
                if name[0] in "xy" and getattr(var, "units", "degrees").lower().startswith("rad"):
                    values = np.rad2deg(values)
                cells[name] = values
        if layout == "scrip":
            row, col, S, method = _scrip_links(nc, path, attrs, cells)
            n_a, n_b = (len(nc.dimensions[d]) for d in ("src_grid_size", "dst_grid_size"))
        else:
            S = np.asarray(nc["S"][:], dtype=np.float64).reshape(-1)
            row = np.asarray(nc["row"][:], dtype=np.int64).reshape(-1) - 1
            col = np.asarray(nc["col"][:], dtype=np.int64).reshape(-1) - 1
            method = _method_from_attrs(attrs)
            n_a, n_b = (len(nc.dimensions[d]) if d in nc.dimensions else None for d in ("n_a", "n_b"))
        # xESMF marks destination cells that no active source reaches (conservative_normed with a
        # mask) by a NaN weight: they are unmapped, which is what a missing row means here.
        finite = np.isfinite(S)
        if not finite.all():
            row, col, S = row[finite], col[finite], S[finite]
        return WeightFile(
            path=path,
            row=row,
            col=col,
            S=S,
            method=method,
            n_a=n_a,
            n_b=n_b,
            src_grid_dims=np.asarray(nc["src_grid_dims"][:]) if "src_grid_dims" in nc.variables else None,
            dst_grid_dims=np.asarray(nc["dst_grid_dims"][:]) if "dst_grid_dims" in nc.variables else None,
            cells=cells,
            attrs=attrs,
            layout=layout,
        )


def _scrip_links(nc, path: Path, attrs: dict, cells: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """``(row, col, S, method)`` of a SCRIP file, its weights brought to ESMF's normalizations.

    SCRIP's ``normalization = "none"`` stores raw overlap areas (steradians): they are divided by the
    destination areas, which is ESMF's DSTAREA. Of several weights per link (second-order
    conservative) the first, the first-order weight, is used; bicubic files need field gradients.
    """
    matrix = np.asarray(nc["remap_matrix"][:], dtype=np.float64)
    matrix = matrix.reshape(len(matrix), -1)
    row = np.asarray(nc["dst_address"][:], dtype=np.int64).reshape(-1) - 1
    col = np.asarray(nc["src_address"][:], dtype=np.int64).reshape(-1) - 1
    map_method = str(attrs.get("map_method", "")).lower()
    norm = str(attrs.get("normalization", "")).lower()
    own = _own_method(attrs)
    if own:
        method = own
    elif map_method.startswith("conservative"):
        method = "conservative_normed" if norm in ("fracarea", "fracnnei") else "conservative"
    elif map_method.startswith("bilinear"):
        method = "bilinear"
    elif map_method.startswith("nearest neighbor"):
        method = "nearest_s2d"
    else:
        method = next((name for name, scrip in SCRIP_METHOD_NAMES.items() if scrip.lower() == map_method), None)
    if matrix.shape[1] > 1 and not (method or "").startswith("conservative"):
        raise RegridError(
            f"weight file {path}: {matrix.shape[1]} weights per link ({attrs.get('map_method')!r}) need the field's "
            "gradients (SCRIP bicubic); only files with one weight per link (or conservative ones) can be applied"
        )
    S = matrix[:, 0].copy()
    if method == "conservative" and norm == "none":
        area_b = cells.get("area_b")
        if area_b is None:
            raise RegridError(
                f"weight file {path}: normalization 'none' (overlap areas) needs dst_grid_area to become weights"
            )
        S /= area_b[row]
    return row, col, S, method


def _own_method(attrs: dict) -> str | None:
    """The method this package recorded (the first of a fallback chain), if any."""
    own = str(attrs.get("atmorep_coupler_method", "")).split("+")[0]
    return own if own and own != "unknown" else None


def _method_from_attrs(attrs: dict) -> str | None:
    own = _own_method(attrs)
    if own:
        return own
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
    layout: str = "esmf",
    format: str = "NETCDF4_CLASSIC",
    attrs: dict[str, object] | None = None,
) -> None:
    """Write ``weights`` in ``layout`` ``"esmf"``, ``"scrip"`` or ``"xesmf"``.

    ESMF and SCRIP files carry areas, fractions, masks, centres and corners (SCRIP's in radians, as
    CDO and OASIS write them); xESMF files only ``S``, ``row``, ``col``. ``format``:
    ``"NETCDF4_CLASSIC"`` (compressed), ``"NETCDF4"``, ``"NETCDF3_64BIT_OFFSET"`` or
    ``"NETCDF3_CLASSIC"`` (what ESMF writes; readable by every netCDF library).
    """
    import netCDF4

    if layout not in LAYOUTS:
        raise RegridError(f"unknown weight-file layout {layout!r}; choose one of {list(LAYOUTS)}")
    row, col, S = weights.triplets()
    compress = {"zlib": True, "complevel": 4, "shuffle": True} if format.startswith("NETCDF4") else {}
    method = weights.method.split("+")[0]
    names = _SCRIP_CELLS if layout == "scrip" else {name: name for name in _SCRIP_CELLS}
    with netCDF4.Dataset(path, "w", format=format) as nc:

        def put(name, dims, values, dtype="f8", units=None):
            var = nc.createVariable(name, dtype, dims, **compress)
            if units is not None:
                var.units = units
            var[:] = values

        if layout == "xesmf":
            nc.setncatts({"regrid_method": method, "atmorep_coupler_method": weights.method, **(attrs or {})})
            nc.createDimension("n_s", len(S))
            put("S", ("n_s",), S)
            put("col", ("n_s",), col + 1, "i4")
            put("row", ("n_s",), row + 1, "i4")
            return
        common = {
            "title": "atmorep_coupler regridding weights",
            "normalization": _NORMALIZATION.get(method, "none" if layout == "scrip" else "N/A"),
            "atmorep_coupler_method": weights.method,
        }
        if layout == "scrip":
            nc.setncatts(
                {
                    **common,
                    "map_method": SCRIP_METHOD_NAMES.get(method, method),
                    "conventions": "SCRIP",
                    "source_grid": src.name,
                    "dest_grid": dst.name,
                    **(attrs or {}),
                }
            )
            sizes, corners = {"a": "src_grid_size", "b": "dst_grid_size"}, {"a": "src_grid_corners", "b": "dst_grid_corners"}
            links, angle = "num_links", "radians"
        else:
            nc.setncatts(
                {
                    **common,
                    "map_method": "Conservative remapping" if method.startswith("conservative") else "Bilinear remapping",
                    "ESMF_regrid_method": ESMF_METHOD_NAMES.get(method, method),
                    "conventions": "NCAR-CSM",
                    "domain_a": src.name,
                    "domain_b": dst.name,
                    **(attrs or {}),
                }
            )
            sizes, corners, links, angle = {"a": "n_a", "b": "n_b"}, {"a": "nv_a", "b": "nv_b"}, "n_s", "degrees"
        for name, size in (
            (sizes["a"], src.size),
            (sizes["b"], dst.size),
            (links, len(S)),
            (corners["a"], 4),
            (corners["b"], 4),
            ("num_wgts", 1),
            ("src_grid_rank", 2),
            ("dst_grid_rank", 2),
        ):
            nc.createDimension(name, size)
        put("src_grid_dims", ("src_grid_rank",), [src.shape[1], src.shape[0]], "i4")
        put("dst_grid_dims", ("dst_grid_rank",), [dst.shape[1], dst.shape[0]], "i4")
        to_angle = np.deg2rad if angle == "radians" else np.asarray
        area_a = weights.area_a if weights.area_a is not None else src.area.ravel()
        area_b = weights.area_b if weights.area_b is not None else dst.area.ravel()
        for suffix, grid, area, frac in (("a", src, area_a, weights.frac_a), ("b", dst, area_b, weights.frac_b)):
            n, nv = sizes[suffix], corners[suffix]
            put(names[f"yc_{suffix}"], (n,), to_angle(grid.center_lat.ravel()), units=angle)
            put(names[f"xc_{suffix}"], (n,), to_angle(grid.center_lon.ravel()), units=angle)
            put(names[f"yv_{suffix}"], (n, nv), to_angle(grid.corner_lat.reshape(-1, 4)), units=angle)
            put(names[f"xv_{suffix}"], (n, nv), to_angle(grid.corner_lon.reshape(-1, 4)), units=angle)
            put(names[f"mask_{suffix}"], (n,), grid.mask.ravel().astype(np.int32), "i4", units="unitless")
            put(names[f"area_{suffix}"], (n,), area, units="square radians")
            put(names[f"frac_{suffix}"], (n,), frac, units="unitless")
        if layout == "scrip":
            put("src_address", (links,), col + 1, "i4")
            put("dst_address", (links,), row + 1, "i4")
            put("remap_matrix", (links, "num_wgts"), S[:, None])
        else:
            put("col", (links,), col + 1, "i4")
            put("row", (links,), row + 1, "i4")
            put("S", (links,), S)
