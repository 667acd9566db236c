"""Regridder: build (or read) weights once, apply them to numpy, xarray and torch fields.

Fields have the source grid's shape ``(ny, nx)`` as their last two dimensions; leading dimensions
are a batch. Destination cells that no weight reaches (outside a regional source, masked, or left
by every method of the fallback chain) get the chain's fixed value, NaN by default.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import sphere
from atmorep_coupler.regrid.bilinear import bilinear_weights
from atmorep_coupler.regrid.conservative import conservative_weights
from atmorep_coupler.regrid.grids import Grid, LatLonGrid
from atmorep_coupler.regrid.nearest import nearest_d2s_weights, nearest_s2d_weights
from atmorep_coupler.regrid.weightfile import read_weight_file, write_weight_file
from atmorep_coupler.regrid.weights import RegridWeights, check_shapes

#: Native weight generators by method name.
METHODS: dict[str, Callable[..., RegridWeights]] = {
    "bilinear": bilinear_weights,
    "conservative": partial(conservative_weights, normalization="dstarea"),
    "conservative_normed": partial(conservative_weights, normalization="fracarea"),
    "nearest_s2d": nearest_s2d_weights,
    "nearest_d2s": nearest_d2s_weights,
}
#: ESMF spellings accepted as aliases.
ALIASES = {"conserve": "conservative", "neareststod": "nearest_s2d", "nearestdtos": "nearest_d2s"}
BACKENDS = ("native", "esmf")
#: Destination fraction below which a fraction-weighted value counts as unmapped.
MIN_FRACTION = 1e-12


def method_name(method: str, *, backend: str = "native") -> str:
    """Canonical method name; :class:`RegridError` for unknown ones."""
    name = ALIASES.get(method, method)
    known = list(METHODS) + (["patch"] if backend == "esmf" else [])
    if name not in known:
        raise RegridError(
            f"unknown regridding method {method!r} for backend {backend!r}; choose one of {known}"
            + (" (patch is only available with backend='esmf' or from an ESMF weight file)" if name == "patch" else "")
        )
    return name


def compute_weights(
    src: Grid,
    dst: Grid,
    method: str,
    *,
    backend: str = "native",
    edges: str = "great_circle",
    min_fraction: float = 0.0,
    progress: bool = False,
) -> RegridWeights:
    """Weights for one method with the chosen backend.

    ``edges`` and ``min_fraction`` concern the conservative methods only
    (:func:`~atmorep_coupler.regrid.conservative.conservative_weights`).
    """
    if backend not in BACKENDS:
        raise RegridError(f"unknown regridding backend {backend!r}; choose one of {list(BACKENDS)}")
    method = method_name(method, backend=backend)
    conservative = method.startswith("conservative")
    if (edges != "great_circle" or min_fraction) and not (conservative and backend == "native"):
        raise RegridError(
            f"edges={edges!r} and min_fraction={min_fraction!r} apply to the native conservative methods only; "
            f"method {method!r} with backend {backend!r} takes the defaults (edges='great_circle', min_fraction=0)"
        )
    if backend == "esmf":
        from atmorep_coupler.regrid.esmf import esmf_weights

        return esmf_weights(src, dst, method)
    if conservative:
        return METHODS[method](src, dst, edges=edges, min_fraction=min_fraction, progress=progress)
    return METHODS[method](src, dst)


def _split_fallback(fallback: Sequence[str | float]) -> tuple[list[str], float]:
    """Method names of a fallback chain and its fixed value (NaN when it has none)."""
    methods, value = [], np.nan
    for k, item in enumerate(fallback):
        if isinstance(item, str):
            methods.append(item)
        elif isinstance(item, (int, float)) and k == len(fallback) - 1:
            value = float(item)
        else:
            raise RegridError(
                f"fallback entry {k} = {item!r}: a fallback chain lists method names and may end with one "
                "number (the value for cells no method maps), e.g. ('nearest_s2d', 0.0)"
            )
    return methods, value


class Regridder:
    """Sparse regridding operator from ``src_grid`` to ``dst_grid``.

    ``method``: ``bilinear``, ``conservative`` (ESMF DSTAREA), ``conservative_normed`` (FRACAREA),
    ``nearest_s2d`` or ``nearest_d2s``. ``fallback``: methods that fill the destination cells left
    unmapped by the ones before, optionally ending with a fixed value, e.g.
    ``("nearest_s2d", 0.0)``. ``check_finite``: reject NaN/inf in active source cells.
    ``progress``: show a progress bar while large conservative weights are computed.
    ``edges`` (conservative methods): ``"great_circle"`` (ESMF's cells, the default) or
    ``"parallels"`` (exact latitude bands between lat-lon grids, as CDO and SCRIP).
    ``min_fraction`` (conservative methods): destination cells covered by active source cells for
    less than this fraction of their area stay unmapped (CDO's ``REMAP_AREA_MIN``; ESMF has none).
    """

    def __init__(
        self,
        src_grid: Grid,
        dst_grid: Grid,
        method: str = "bilinear",
        *,
        backend: str = "native",
        fallback: Sequence[str | float] = (),
        weights: RegridWeights | None = None,
        edges: str = "great_circle",
        min_fraction: float = 0.0,
        check_finite: bool = True,
        progress: bool = True,
    ) -> None:
        self.src_grid = src_grid
        self.dst_grid = dst_grid
        self.backend = backend
        self.check_finite = check_finite
        fallback_methods, self.fill_value = _split_fallback(fallback)
        if weights is None:
            weights = compute_weights(
                src_grid, dst_grid, method, backend=backend, edges=edges, min_fraction=min_fraction, progress=progress
            )
            self.method = method_name(method, backend=backend)
        else:
            check_shapes(weights, src_grid.shape, dst_grid.shape, "Regridder")
            self.method = method
        for name in fallback_methods:
            weights = weights.with_fallback(compute_weights(src_grid, dst_grid, name, backend=backend))
        self.weights = weights
        self._unmapped = ~weights.mapped
        self._src_inactive = ~src_grid.mask.ravel()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        src_grid: Grid,
        dst_grid: Grid,
        *,
        fallback: Sequence[str | float] = (),
        check_finite: bool = True,
    ) -> Regridder:
        """Load weights from an ESMF, SCRIP (CDO, OASIS) or xESMF file after checking that they fit the grids."""
        wf = read_weight_file(path)
        weights = wf.to_weights(src_grid, dst_grid)
        return cls(
            src_grid,
            dst_grid,
            wf.method or "unknown",
            weights=weights,
            fallback=fallback,
            check_finite=check_finite,
        )

    def to_file(self, path: str | Path, *, layout: str = "esmf", format: str = "NETCDF4_CLASSIC") -> Path:
        """Write the weights as a weight file in ``layout`` ``"esmf"`` (ESMF, xESMF and CMEPS read it),
        ``"scrip"`` (CDO's ``remap``, OASIS ``rmp_*`` files) or ``"xesmf"`` (``S``, ``row``, ``col`` only).

        ESMF and SCRIP files carry areas, fractions, masks, centres and corners.
        """
        write_weight_file(path, self.weights, self.src_grid, self.dst_grid, layout=layout, format=format)
        return Path(path)

    def to_netcdf(self, path: str | Path, *, format: str = "NETCDF4_CLASSIC") -> Path:
        """Write the weights as an ESMF weight file (``to_file`` with ``layout="esmf"``)."""
        return self.to_file(path, layout="esmf", format=format)

    def __repr__(self) -> str:
        return (
            f"Regridder({self.src_grid!r} -> {self.dst_grid!r}, method={self.weights.method!r}, "
            f"nnz={self.weights.matrix.nnz}, unmapped={int(self._unmapped.sum())})"
        )

    # -- public application ----------------------------------------------------------------------
    def apply(self, x, *, src_frac=None):
        """Regrid ``x`` (numpy array, torch tensor, xarray DataArray or Dataset).

        With ``src_frac`` (fraction of each source cell that holds valid data, e.g. an ocean
        fraction; shape of ``x`` or of the grid) the field is mapped fraction-weighted as in the
        CMEPS mediator: ``W(f x) / W(f)``, so cells with ``f = 0`` never contribute.
        """
        if src_frac is not None:
            return self.apply_fraction_weighted(x, src_frac)[0]
        return self._dispatch(x, self._apply_array)

    def apply_fraction_weighted(self, x, src_frac):
        """``(W(f x) / W(f), W(f))``: the fraction-weighted field and the destination fraction.

        ``x`` and ``src_frac``: arrays or tensors (``src_frac`` broadcastable to ``x``), or DataArrays.
        """
        xr = _xarray_of(x)
        if xr is not None and isinstance(x, xr.DataArray):
            dims = self._xarray_src_dims(x)
            frac = (
                src_frac
                if isinstance(src_frac, xr.DataArray)
                else xr.DataArray(src_frac, dims=x.dims[-src_frac.ndim :])
            )
            x, frac = xr.broadcast(x.transpose(..., *dims), frac)
            frac = frac.transpose(*x.dims)
            return self._regrid_dataarray_pair(
                x, lambda a: self._apply_fraction_array(a, np.asarray(frac.values)), dims
            )
        return self._apply_fraction_array(x, src_frac)

    def apply_vector(self, u, v):
        """Regrid a vector field given by eastward ``u`` and northward ``v`` components.

        The vector is mapped through its 3-D Cartesian components ``u e + v n`` (``e``, ``n``: local
        east and north unit vectors), then projected onto the destination's local east and north,
        so it stays smooth across the poles where the components themselves are discontinuous.
        """
        xr = _xarray_of(u)
        if xr is not None and isinstance(u, xr.DataArray):
            dims = self._xarray_src_dims(u)
            u = u.transpose(..., *dims)
            v_values = np.asarray(v.transpose(*u.dims).values)
            u_out, v_out = self._regrid_dataarray_pair(u, lambda a: self._apply_vector_array(a, v_values), dims)
            return u_out, v_out.rename(v.name).assign_attrs(v.attrs)
        return self._apply_vector_array(u, v)

    # -- arrays ----------------------------------------------------------------------------------
    def _flatten(self, x):
        shape = tuple(x.shape)
        if shape[-2:] != self.src_grid.shape:
            raise RegridError(
                f"field of shape {shape} does not fit the source grid: its last two dimensions must be "
                f"{self.src_grid.shape} (ny, nx)"
            )
        return x.reshape(-1, self.src_grid.size), shape[:-2]

    def _apply_array(self, x):
        """``W x`` with masked source cells ignored and unmapped destination cells filled."""
        torch = _torch_of(x)
        if torch is None:
            x = np.asarray(x)
            if not np.issubdtype(x.dtype, np.floating):
                x = x.astype(np.float64)
        flat, lead = self._flatten(x)
        if self._src_inactive.any():
            if torch is None:
                flat = np.where(self._src_inactive, 0.0, flat)
            else:
                inactive = self.weights.torch_mask("src_inactive", self._src_inactive, flat.device)
                flat = torch.where(inactive, torch.zeros((), dtype=flat.dtype, device=flat.device), flat)
        if self.check_finite:
            self._check_finite(flat)
        y = self.weights.matmul(flat)
        y = self._fill_unmapped(y, torch)
        return y.reshape(*lead, *self.dst_grid.shape)

    def _fill_unmapped(self, y, torch):
        if not self._unmapped.any():
            return y
        if torch is None:
            y[:, self._unmapped] = self.fill_value
            return y
        mask = self.weights.torch_mask("dst_unmapped", self._unmapped, y.device)
        return torch.where(mask, torch.tensor(self.fill_value, dtype=y.dtype, device=y.device), y)

    def _check_finite(self, flat) -> None:
        # One reduction is far cheaper than an elementwise test: a NaN or inf makes the sum non-finite.
        # A non-finite sum of finite values (overflow) is told apart by the exact test below.
        torch = _torch_of(flat)
        if torch is not None:
            flat = flat.detach()
            if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
                flat = flat.numpy()  # shares memory; numpy's reduction avoids torch's thread start-up
        if bool(np.isfinite(float(flat.sum()))):
            return
        bad = ~np.isfinite(flat if isinstance(flat, np.ndarray) else flat.float().cpu().numpy())
        if not bad.any():
            return
        batch, k = np.argwhere(bad)[0]
        j, i = divmod(int(k), self.src_grid.shape[1])
        raise RegridError(
            f"source field has {int(bad.sum())} NaN/inf values in active (unmasked) cells of the source grid; "
            f"first in batch element {int(batch)} at (j, i) = ({j}, {i}), lat {self.src_grid.center_lat[j, i]:.4f}, "
            f"lon {self.src_grid.center_lon[j, i]:.4f}. Fill them, or mask those cells (grid mask or src_frac = 0)"
        )

    def _apply_fraction_array(self, x, src_frac):
        """Fraction-weighted mapping ``W(f x) / W(f)`` (CMEPS); returns the field and ``W(f)``.

        Cells with ``f = 0`` (or masked in the grid) are zeroed before mapping, so NaNs there are fine.
        """
        torch = _torch_of(x)
        if torch is None:
            x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
            frac = np.broadcast_to(np.asarray(src_frac, dtype=x.dtype), x.shape)
            valid = (frac > 0) & self.src_grid.mask
            fx = np.where(valid, x, 0.0) * frac
            f = np.where(valid, frac, 0.0)
        else:
            frac = torch.as_tensor(src_frac, dtype=x.dtype, device=x.device).expand(x.shape)
            grid_mask = self.weights.torch_mask("src_active", self.src_grid.mask, x.device)
            valid = (frac > 0) & grid_mask
            zero = torch.zeros((), dtype=x.dtype, device=x.device)
            fx = torch.where(valid, x, zero) * frac
            f = torch.where(valid, frac, zero)
        num = self._apply_array(fx)
        den = self._apply_array(f)
        mapped = den > MIN_FRACTION  # False where den is NaN (unmapped cells)
        if torch is None:
            y = np.full_like(num, self.fill_value)
            np.divide(num, den, out=y, where=mapped)
            return y, np.where(mapped, den, 0.0)
        safe = torch.where(mapped, den, torch.ones((), dtype=den.dtype, device=den.device))
        fill = torch.tensor(self.fill_value, dtype=num.dtype, device=num.device)
        return torch.where(mapped, num / safe, fill), torch.where(mapped, den, torch.zeros_like(den))

    def _apply_vector_array(self, u, v):
        torch = _torch_of(u)
        east, north = sphere.east_north_vectors(self.src_grid.center_lon, self.src_grid.center_lat)
        d_east, d_north = sphere.east_north_vectors(self.dst_grid.center_lon, self.dst_grid.center_lat)
        if torch is not None:
            dev, dt = u.device, u.dtype
            east, north, d_east, d_north = (
                torch.as_tensor(a, dtype=dt, device=dev) for a in (east, north, d_east, d_north)
            )
            cart = u[..., None] * east + v[..., None] * north  # (..., ny, nx, 3)
            mapped = self._apply_array(torch.movedim(cart, -1, 0))  # (3, ..., ny', nx')
            mapped = torch.movedim(mapped, 0, -1)
            return (mapped * d_east).sum(-1), (mapped * d_north).sum(-1)
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        cart = u[..., None] * east + v[..., None] * north
        mapped = np.moveaxis(self._apply_array(np.moveaxis(cart, -1, 0)), 0, -1)
        return (mapped * d_east).sum(-1), (mapped * d_north).sum(-1)

    # -- xarray ----------------------------------------------------------------------------------
    def _xarray_src_dims(self, obj) -> tuple[str, str]:
        """Names of the source grid dimensions in an xarray object: the grid's own (or, for data from
        elsewhere, the short ``lat``/``lon`` of a lat-lon grid), else the last two."""
        import xarray as xr

        arrays = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
        names = self.src_grid.dims
        short = ("lat", "lon") if names == ("latitude", "longitude") else names
        for candidate in (names, short):
            if any(set(candidate) <= set(da.dims) for da in arrays):
                return candidate
        for da in arrays:
            if da.ndim >= 2 and da.shape[-2:] == self.src_grid.shape:
                return da.dims[-2], da.dims[-1]
        raise RegridError(
            f"no variable has the source grid dimensions {names} or trailing dimensions of sizes "
            f"{self.src_grid.shape}; dimensions found: {[dict(da.sizes) for da in arrays]}"
        )

    def _dispatch(self, x, fn):
        xr = _xarray_of(x)
        if xr is None:
            return fn(x)
        if isinstance(x, xr.DataArray):
            return self._regrid_dataarray(x, fn, self._xarray_src_dims(x))
        if isinstance(x, xr.Dataset):
            dims = self._xarray_src_dims(x)
            out = {}
            for name, var in x.data_vars.items():
                if set(dims) <= set(var.dims):
                    out[name] = self._regrid_dataarray(var, fn, dims)
                elif not set(dims) & set(var.dims):
                    out[name] = var
            result = xr.Dataset(out, attrs=dict(x.attrs))
            keep = {k: c for k, c in x.coords.items() if not set(dims) & set(c.dims) and k not in result.coords}
            return result.assign_coords(keep)
        return fn(x)

    def _regrid_dataarray(self, da, fn, dims: tuple[str, str]):
        return self._regrid_dataarray_pair(da, lambda a: (fn(a),), dims)[0]

    def _regrid_dataarray_pair(self, da, fn, dims: tuple[str, str]):
        """Apply ``fn`` (array -> tuple of arrays) to a DataArray; wrap each output like the input."""
        import xarray as xr

        da = da.transpose(..., *dims)
        lead = da.dims[:-2]
        clash = set(lead) & set(self.dst_grid.dims)
        if clash:
            raise RegridError(
                f"variable {da.name!r}: its dimensions {sorted(clash)} would clash with the destination grid's "
                f"dimensions {self.dst_grid.dims}; rename them first"
            )
        self._check_coordinates(da, dims)
        coords = {k: c for k, c in da.coords.items() if not set(dims) & set(c.dims)}
        coords.update(self.dst_grid.coords())
        return tuple(
            xr.DataArray(values, dims=(*lead, *self.dst_grid.dims), coords=coords, attrs=dict(da.attrs), name=da.name)
            for values in fn(np.asarray(da.values))
        )

    def _check_coordinates(self, da, dims: tuple[str, str]) -> None:
        """Raise when the DataArray's 1-D grid coordinates differ from the source grid's centres.

        Catches the classic slip of data stored south-to-north on a north-to-south grid (or with
        another longitude origin), which would otherwise be regridded silently upside down.
        """
        if not isinstance(self.src_grid, LatLonGrid):
            return
        for dim, expected, what in zip(dims, (self.src_grid.lat, self.src_grid.lon), ("latitude", "longitude")):
            if dim not in da.coords or da[dim].ndim != 1 or not np.issubdtype(da[dim].dtype, np.number):
                continue
            diff = np.asarray(da[dim].values, dtype=np.float64) - expected
            if what == "longitude":
                diff = (diff + 180.0) % 360.0 - 180.0
            if np.abs(diff).max() > 1e-6:
                k = int(np.argmax(np.abs(diff) > 1e-6))
                raise RegridError(
                    f"variable {da.name!r}: coordinate {dim!r} = {float(da[dim][k])} at index {k}, but the source "
                    f"grid's {what} there is {expected[k]}; reorder the data (e.g. reverse the latitudes) or build "
                    "the grid from these coordinates (LatLonGrid.from_centers / lat_order)"
                )


def _torch_of(x):
    """The torch module when ``x`` is a torch tensor, else None (torch is imported only if loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return None


def _xarray_of(x):
    """The xarray module when ``x`` is an xarray object, else None.

    An xarray object can only exist once xarray is imported, so numpy and torch input never pay
    for importing it (more than a second, the first time).
    """
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(x, (xr.DataArray, xr.Dataset)):
        return xr
    return None
