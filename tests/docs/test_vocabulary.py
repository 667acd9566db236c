"""One vocabulary for axes (docs/architecture.md, "Axis names"): the package names the dims and
coordinate variables of rectilinear grids ``latitude``/``longitude``, never ``lat``/``lon``.

The test parses the package's source with :mod:`ast` and flags the string literals ``"lat"`` and
``"lon"`` where they name a dimension or coordinate: in dims tuples and lists, ``dims=``/``dim=``
arguments, mapping keys (coords, renames), ``.sel(lat=...)``-style keywords, ``ds["lat"]``
subscripts, ``"lat" in ds.coords`` tests and positional arguments of xarray's dim-taking methods.
Prose, variable names such as ``lat`` and keyword arguments of the package's own functions (e.g.
``ERA5Store.read(lat=...)``, which takes indices) are not names of axes and are not flagged.

Readers of external or older files may accept ``lat``/``lon`` as aliases; they are listed in
:data:`TOLERANT_READERS` (module, enclosing definition) and nowhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "atmorep_coupler"
SHORT = {"lat", "lon"}

#: Tolerant readers: (module path relative to the package, enclosing function/class/constant).
TOLERANT_READERS = {
    ("data/store.py", "_DIM_ALIASES"),  # ERA5/CDS/CMIP downloads -> the store layout
    ("regrid/grids.py", "Grid.from_dataset"),  # CF grid files from any source
    ("analysis/plots.py", "output_axes"),  # coupled-run outputs written before the rename
    ("coupling/build.py", "_read_mask"),  # land-sea mask files from any source
    ("regrid/regridder.py", "Regridder._xarray_src_dims"),  # xarray data from any source
}

#: xarray methods whose keywords or positional strings are dimension/coordinate names.
_DIM_METHODS = {
    "sel", "isel", "rename", "rename_dims", "rename_vars", "swap_dims", "assign_coords", "expand_dims",
    "transpose", "drop_vars", "drop_sel", "squeeze", "sortby", "set_coords", "reset_coords", "stack",
    "roll", "shift", "coarsen", "rolling", "interp", "reindex", "pad", "chunk",
}
_DIM_KEYWORDS = {"dims", "dim", "dimension", "dimensions"}


def _is_short(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in SHORT


def axis_names_used(source: str) -> list[tuple[int, str, str]]:
    """``(line, enclosing definition, why)`` for each ``"lat"``/``"lon"`` used as an axis name."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = f"{scope}.{node.name}" if scope else node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not scope:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            scope = names[0] if names else scope
        why = _why(node)
        if why:
            found.append((node.lineno, scope, why))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), "")
    return found


def _why(node: ast.AST) -> str | None:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ) and any(_is_short(e) for e in node.elts):
        return "dims sequence"
    if isinstance(node, ast.Dict) and any(k is not None and _is_short(k) for k in node.keys):
        return "mapping key"
    if isinstance(node, ast.Subscript) and _is_short(node.slice):
        return "subscript"
    if isinstance(node, ast.Compare) and _is_short(node.left) and any(
        isinstance(op, (ast.In, ast.NotIn)) for op in node.ops
    ):
        return "membership test"
    if isinstance(node, ast.Call):
        for kw in node.keywords:
            if kw.arg in _DIM_KEYWORDS and _is_short(kw.value):
                return f"{kw.arg}= argument"
        if isinstance(node.func, ast.Attribute) and node.func.attr in _DIM_METHODS:
            if any(kw.arg in SHORT for kw in node.keywords):
                return f".{node.func.attr}() keyword"
            if any(_is_short(a) for a in node.args):
                return f".{node.func.attr}() argument"
    return None


def test_package_names_rectilinear_axes_latitude_and_longitude():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for line, scope, why in axis_names_used(path.read_text()):
            if (module, scope) not in TOLERANT_READERS:
                offences.append(f"atmorep_coupler/{module}:{line} in {scope or '<module>'}: {why}")
    assert not offences, (
        "'lat'/'lon' used as an axis name; use 'latitude'/'longitude' (or add a tolerant reader of "
        "external files to TOLERANT_READERS):\n" + "\n".join(offences)
    )


def test_tolerant_readers_still_exist():
    """An allow-list entry that no longer matches anything would silently widen the exception."""
    used = set()
    for module, _ in TOLERANT_READERS:
        used |= {(module, scope) for _, scope, _ in axis_names_used((PACKAGE / module).read_text())}
    assert TOLERANT_READERS <= used, TOLERANT_READERS - used


def test_the_check_catches_reintroduced_short_names_and_spares_prose_and_variables():
    bad = '''
import xarray as xr
def write(values, lat, lon):
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    da = da.sel(lat=slice(0, 10)).isel(lon=0)
    grid_dims = ["time", "lat", "lon"]
    return da["lat"], da.mean(dim="lon"), da.transpose("lon", ...), "lat" in da.coords
'''
    whys = [why for _, _, why in axis_names_used(bad)]
    assert whys.count("dims sequence") == 2  # dims=("lat", "lon") and the list
    assert {"mapping key", ".sel() keyword", ".isel() keyword", "subscript", "dim= argument",
            ".transpose() argument", "membership test"} <= set(whys)
    assert all(scope == "write" for _, scope, _ in axis_names_used(bad))

    fine = '''
"""Rows of lat and lon: the "lat" axis is called latitude."""
def read(store, lat, lon):
    lat = store.read("t", lat=slice(2, 5), lon=lon)  # the store's own index keywords
    da = xr.DataArray(lat, dims=("latitude", "longitude"))
    print(f"lat {lat} lon {lon}", "lat")
    return da.sel(latitude=0.0), ("y", "x")
'''
    assert axis_names_used(fine) == []
