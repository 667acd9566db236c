"""Grids on the unit sphere: regular lat-lon, Gaussian and curvilinear, with corners, areas and masks.

Every grid is a logically rectangular array of cells of shape ``(ny, nx)`` in C order with x (the
longitude, or the rotated/model longitude) running fastest -- the ESMF/SCRIP flattening order
``k = i + nx * j``. Each cell knows its centre, its four corners (counter-clockwise seen from
outside the sphere, starting at the south-west corner), a mask (True = active) and its area on the
unit sphere with corners joined by great circles, as ESMF computes it for conservative weights.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from atmorep_coupler.errors import RegridError
from atmorep_coupler.regrid import sphere

_FULL_SPHERE = 4.0 * np.pi


class Grid:
    """Cells of a logically rectangular grid on the sphere (base of all grid kinds).

    ``center_lat/center_lon``: ``(ny, nx)`` degrees; ``corner_lat/corner_lon``: ``(ny, nx, 4)`` degrees,
    counter-clockwise from the south-west corner; ``mask``: ``(ny, nx)`` bool, True = active.
    ``is_global`` (None = infer): the cells tile the whole sphere and x is periodic.
    """

    #: Dimension names used for xarray input and output.
    dims: tuple[str, str] = ("y", "x")

    def __init__(
        self,
        center_lat: np.ndarray,
        center_lon: np.ndarray,
        corner_lat: np.ndarray,
        corner_lon: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        is_global: bool | None = None,
        name: str = "grid",
    ) -> None:
        self.name = name
        self.center_lat = np.asarray(center_lat, dtype=np.float64)
        self.center_lon = np.asarray(center_lon, dtype=np.float64)
        self.corner_lat = np.asarray(corner_lat, dtype=np.float64)
        self.corner_lon = np.asarray(corner_lon, dtype=np.float64)
        self._check_arrays()
        self.mask = self._as_mask(mask)
        self._orient_counterclockwise()
        self._is_global = is_global

    # -- validation ------------------------------------------------------------------------------
    def _check_arrays(self) -> None:
        shape = self.center_lat.shape
        if len(shape) != 2 or self.center_lon.shape != shape:
            raise RegridError(
                f"{self.name}: cell centres must be 2-D arrays of equal shape (ny, nx); got latitude "
                f"{self.center_lat.shape} and longitude {self.center_lon.shape}"
            )
        for what, arr in (("corner latitude", self.corner_lat), ("corner longitude", self.corner_lon)):
            if arr.shape != shape + (4,):
                raise RegridError(f"{self.name}: {what} must have shape {shape + (4,)}, got {arr.shape}")
        for what, arr in (
            ("centre latitude", self.center_lat),
            ("centre longitude", self.center_lon),
            ("corner latitude", self.corner_lat),
            ("corner longitude", self.corner_lon),
        ):
            if not np.all(np.isfinite(arr)):
                raise RegridError(f"{self.name}: {what} contains NaN or infinite values")
        for what, arr in (("centre latitude", self.center_lat), ("corner latitude", self.corner_lat)):
            if np.abs(arr).max() > 90.0 + 1e-9:
                raise RegridError(f"{self.name}: {what} outside [-90, 90] degrees (max |lat| = {np.abs(arr).max()!r})")
        self.center_lat = np.clip(self.center_lat, -90.0, 90.0)
        self.corner_lat = np.clip(self.corner_lat, -90.0, 90.0)

    def _as_mask(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.ones(self.shape, dtype=bool)
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise RegridError(f"{self.name}: mask shape {mask.shape} does not match grid shape {self.shape}")
        return mask.astype(bool)

    def _orient_counterclockwise(self) -> None:
        """Reverse the corner order of cells given clockwise (e.g. files with a north-first order)."""
        signed = sphere.polygon_area(self.corner_xyz)
        clockwise = signed < 0
        if clockwise.any():
            order = np.array([0, 3, 2, 1])
            self.corner_lat = np.where(clockwise[..., None], self.corner_lat[..., order], self.corner_lat)
            self.corner_lon = np.where(clockwise[..., None], self.corner_lon[..., order], self.corner_lon)
            self.__dict__.pop("corner_xyz", None)
        else:
            self.__dict__["area"] = signed  # the areas are known now; spare the recomputation

    # -- geometry --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.center_lat.shape  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def center_xyz(self) -> np.ndarray:
        """Cell centres as unit vectors ``(ny, nx, 3)``."""
        return sphere.lonlat_to_xyz(self.center_lon, self.center_lat)

    @cached_property
    def corner_xyz(self) -> np.ndarray:
        """Cell corners as unit vectors ``(ny, nx, 4, 3)``."""
        return sphere.lonlat_to_xyz(self.corner_lon, self.corner_lat)

    @cached_property
    def area(self) -> np.ndarray:
        """Cell areas on the unit sphere (sr) with great-circle edges between the corners, as ESMF."""
        return sphere.polygon_area(self.corner_xyz)

    @cached_property
    def periodic(self) -> bool:
        """True when the east edge of the last column is the west edge of the first (x wraps)."""
        east = self.corner_xyz[:, -1, [1, 2]]
        west = self.corner_xyz[:, 0, [0, 3]]
        return bool(np.abs(east - west).max() < 1e-9)

    @property
    def is_global(self) -> bool:
        """True when x is periodic and the cells cover the whole sphere."""
        if self._is_global is None:
            self._is_global = self.periodic and abs(self.area.sum() - _FULL_SPHERE) < 1e-8 * _FULL_SPHERE
        return bool(self._is_global)

    def with_mask(self, mask: np.ndarray | None) -> Grid:
        """A copy of this grid with another mask (True = active)."""
        import copy

        other = copy.copy(self)
        other.mask = self._as_mask(mask)
        return other

    # -- xarray and files ------------------------------------------------------------------------
    def coords(self) -> dict[str, tuple]:
        """xarray coordinates of the cell centres (2-D ``latitude``/``longitude`` on :attr:`dims`)."""
        return {
            "latitude": (self.dims, self.center_lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (self.dims, self.center_lon, {"standard_name": "longitude", "units": "degrees_east"}),
        }

    def to_dataset(self):
        """The grid as a CF dataset: centres, ``latitude_bounds``/``longitude_bounds`` (4 vertices), mask, area."""
        import xarray as xr

        coords = self.coords()
        for name in ("latitude", "longitude"):
            coords[name][2]["bounds"] = f"{name}_bounds"
        ds = xr.Dataset(
            {
                "latitude_bounds": ((*self.dims, "nv"), self.corner_lat, {"units": "degrees_north"}),
                "longitude_bounds": ((*self.dims, "nv"), self.corner_lon, {"units": "degrees_east"}),
                "mask": (self.dims, self.mask.astype(np.int8), {"long_name": "1 = active cell"}),
                "area": (self.dims, self.area, {"units": "sr", "long_name": "great-circle cell area"}),
            },
            coords=coords,
        )
        return ds

    @classmethod
    def from_dataset(cls, ds, *, mask: np.ndarray | None = None) -> Grid:
        """Build a grid from an xarray dataset with CF coordinates and (optionally) CF bounds.

        1-D latitude/longitude coordinates give a :class:`LatLonGrid` (bounds from the ``bounds``
        attribute, else from the centres); 2-D ones a :class:`CurvilinearGrid`, which needs bounds
        of shape ``(ny, nx, 4)``. A ``mask`` variable (non-zero = active) is used unless ``mask`` is given.
        """
        lat_name = _find_coord(ds, "latitude", ("lat", "latitude", "nav_lat", "yc"))
        lon_name = _find_coord(ds, "longitude", ("lon", "longitude", "nav_lon", "xc"))
        lat, lon = ds[lat_name], ds[lon_name]
        lat_b = _bounds_of(ds, lat)
        lon_b = _bounds_of(ds, lon)
        if mask is None and "mask" in ds.variables:
            mask = np.asarray(ds["mask"].values) != 0
        if lat.ndim == 1 and lon.ndim == 1:
            grid = LatLonGrid.from_centers(lat.values, lon.values, lat_bounds=lat_b, lon_bounds=lon_b, mask=mask)
            grid.dims = (lat.dims[0], lon.dims[0])
            return grid
        if lat.ndim == 2 and lon.ndim == 2:
            if lat_b is None or lon_b is None:
                raise RegridError(
                    f"dataset variables {lat_name!r}/{lon_name!r} are 2-D but have no CF 'bounds' "
                    "attribute: a curvilinear grid needs cell corners (bounds of shape (ny, nx, 4))"
                )
            grid = CurvilinearGrid(lat.values, lon.values, lat_b, lon_b, mask=mask)
            grid.dims = tuple(lat.dims)  # type: ignore[assignment]
            return grid
        raise RegridError(
            f"dataset coordinates {lat_name!r} {lat.dims} and {lon_name!r} {lon.dims} must both be 1-D or both 2-D"
        )

    @classmethod
    def from_scrip(cls, path: str | Path, *, is_global: bool | None = None) -> Grid:
        """Read a SCRIP grid file (``grid_dims = [nx, ny]``, x fastest, ``grid_imask`` 1 = active).

        Returns a :class:`LatLonGrid` when the cells are rectilinear in latitude/longitude, else a
        :class:`CurvilinearGrid`.
        """
        import netCDF4

        path = Path(path)
        if not path.exists():
            raise RegridError(f"SCRIP grid file {path} does not exist")
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_mask(False)
            try:
                nx, ny = (int(v) for v in nc["grid_dims"][:])
                clat = _degrees(nc["grid_center_lat"]).reshape(ny, nx)
                clon = _degrees(nc["grid_center_lon"]).reshape(ny, nx)
                vlat = _degrees(nc["grid_corner_lat"]).reshape(ny, nx, -1)
                vlon = _degrees(nc["grid_corner_lon"]).reshape(ny, nx, -1)
                imask = nc["grid_imask"][:].reshape(ny, nx) != 0 if "grid_imask" in nc.variables else None
            except (KeyError, IndexError, ValueError) as exc:
                raise RegridError(f"SCRIP grid file {path}: missing or malformed variable ({exc})") from exc
        if vlat.shape[-1] != 4:
            raise RegridError(f"SCRIP grid file {path}: {vlat.shape[-1]} corners per cell, only 4 are supported")
        rect = _rectilinear_from_corners(clat, clon, vlat, vlon)
        if rect is not None:
            grid = LatLonGrid.from_centers(clat[:, 0], clon[0], lat_bounds=rect[0], lon_bounds=rect[1], mask=imask)
        else:
            grid = CurvilinearGrid(clat, clon, vlat, vlon, mask=imask, is_global=is_global)
        grid.name = str(path)
        if is_global is not None:
            grid._is_global = is_global
        return grid

    def to_scrip(self, path: str | Path, *, title: str = "atmorep_coupler grid") -> None:
        """Write the grid as a SCRIP grid file (readable by ESMF_RegridWeightGen)."""
        import netCDF4

        ny, nx = self.shape
        with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
            nc.title = title
            nc.createDimension("grid_size", self.size)
            nc.createDimension("grid_corners", 4)
            nc.createDimension("grid_rank", 2)
            nc.createVariable("grid_dims", "i4", ("grid_rank",))[:] = [nx, ny]
            for name, values in (
                ("grid_center_lat", self.center_lat.ravel()),
                ("grid_center_lon", self.center_lon.ravel()),
            ):
                var = nc.createVariable(name, "f8", ("grid_size",))
                var.units = "degrees"
                var[:] = values
            for name, values in (
                ("grid_corner_lat", self.corner_lat.reshape(-1, 4)),
                ("grid_corner_lon", self.corner_lon.reshape(-1, 4)),
            ):
                var = nc.createVariable(name, "f8", ("grid_size", "grid_corners"))
                var.units = "degrees"
                var[:] = values
            var = nc.createVariable("grid_imask", "i4", ("grid_size",))
            var.units = "unitless"
            var[:] = self.mask.ravel().astype(np.int32)
            var = nc.createVariable("grid_area", "f8", ("grid_size",))
            var.units = "radians^2"
            var[:] = self.area.ravel()

    def __repr__(self) -> str:
        ny, nx = self.shape
        return f"{type(self).__name__}({ny} x {nx}, global={self.is_global}, masked={int((~self.mask).sum())})"


class LatLonGrid(Grid):
    """Regular (or rectilinear) latitude-longitude grid.

    ``LatLonGrid(nlat, nlon)`` has cells of ``180/nlat x 360/nlon`` degrees with edges at the poles and
    at ``lon0 + i * 360/nlon`` (centres half a cell east of ``lon0``). ``lat_order`` chooses whether row
    0 is the northernmost (``"descending"``, as ERA5) or the southernmost (``"ascending"``, as ESMF/SCRIP
    examples). :meth:`from_centers` builds any rectilinear grid (e.g. ERA5's 721 x 1440 with points at
    the poles) from 1-D centres, with cell edges halfway between them unless bounds are given.
    """

    dims = ("latitude", "longitude")

    def __init__(
        self,
        nlat: int,
        nlon: int,
        *,
        lat_order: str = "descending",
        lon0: float = 0.0,
        mask: np.ndarray | None = None,
    ) -> None:
        lat_edges = np.linspace(-90.0, 90.0, nlat + 1)
        lon_edges = lon0 + np.arange(nlon + 1) * (360.0 / nlon)
        lat_b = np.stack([lat_edges[:-1], lat_edges[1:]], axis=-1)
        lon_b = np.stack([lon_edges[:-1], lon_edges[1:]], axis=-1)
        lat = lat_b.mean(axis=1)
        if lat_order == "descending":
            lat, lat_b = lat[::-1], lat_b[::-1, ::-1]
        elif lat_order != "ascending":
            raise RegridError(f"lat_order must be 'descending' or 'ascending', got {lat_order!r}")
        self._init_rectilinear(lat, lon_b.mean(axis=1), lat_b, lon_b, mask, f"LatLonGrid({nlat}, {nlon})")

    @classmethod
    def from_centers(
        cls,
        lat: np.ndarray,
        lon: np.ndarray,
        *,
        lat_bounds: np.ndarray | None = None,
        lon_bounds: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> LatLonGrid:
        """Rectilinear grid from 1-D centres (strictly monotonic latitude, strictly increasing longitude).

        Without bounds, edges lie halfway between centres and the outer edges half a spacing
        beyond the outer centres, clipped to +-90 (so ERA5's pole points get half cells).
        """
        grid = cls.__new__(cls)
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        _check_monotonic(lat, "latitude", increasing_only=False)
        _check_monotonic(lon, "longitude", increasing_only=True)
        if lat_bounds is None:
            lat_bounds = np.clip(_bounds_from_centers(lat), -90.0, 90.0)
        if lon_bounds is None:
            lon_bounds = _bounds_from_centers(lon)
        grid._init_rectilinear(lat, lon, np.asarray(lat_bounds), np.asarray(lon_bounds), mask, "LatLonGrid")
        return grid

    def _init_rectilinear(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        lat_bounds: np.ndarray,
        lon_bounds: np.ndarray,
        mask: np.ndarray | None,
        name: str,
    ) -> None:
        self.lat = np.asarray(lat, dtype=np.float64)
        self.lon = np.asarray(lon, dtype=np.float64)
        self.lat_bounds = np.asarray(lat_bounds, dtype=np.float64)
        self.lon_bounds = np.asarray(lon_bounds, dtype=np.float64)
        nlat, nlon = self.lat.size, self.lon.size
        if self.lat_bounds.shape != (nlat, 2) or self.lon_bounds.shape != (nlon, 2):
            raise RegridError(
                f"{name}: bounds must have shapes ({nlat}, 2) and ({nlon}, 2); got "
                f"{self.lat_bounds.shape} and {self.lon_bounds.shape}"
            )
        south = self.lat_bounds.min(axis=1)[:, None]
        north = self.lat_bounds.max(axis=1)[:, None]
        west = self.lon_bounds[:, 0][None, :]
        east = self.lon_bounds[:, 1][None, :]
        ones = np.ones((nlat, nlon))
        corner_lat = np.stack([south * ones, south * ones, north * ones, north * ones], axis=-1)
        corner_lon = np.stack([west * ones, east * ones, east * ones, west * ones], axis=-1)
        center_lat, center_lon = np.meshgrid(self.lat, self.lon, indexing="ij")
        Grid.__init__(self, center_lat, center_lon, corner_lat, corner_lon, mask, name=name)

    def _orient_counterclockwise(self) -> None:
        """Measure one cell per row and longitude width (the others are congruent to it); reorder
        corners only if some cell is clockwise (longitude bounds given east to west)."""
        width = np.mod(self.lon_bounds[:, 1] - self.lon_bounds[:, 0], 360.0)
        widths, which = np.unique(width, return_inverse=True)
        south, north = self.lat_bounds.min(axis=1), self.lat_bounds.max(axis=1)
        lon = np.stack([0.0 * widths, widths, widths, 0.0 * widths], axis=-1)[None]  # (1, n_widths, 4)
        lat = np.stack([south, south, north, north], axis=-1)[:, None]  # (ny, 1, 4)
        signed = sphere.polygon_area(sphere.lonlat_to_xyz(lon, lat))[:, which.ravel()]
        if (signed < 0).any():
            super()._orient_counterclockwise()
        else:
            self.__dict__["area"] = signed

    @cached_property
    def center_xyz(self) -> np.ndarray:
        # Separable: trigonometry per row and per column only.
        return sphere.lonlat_to_xyz(self.lon[None, :], self.lat[:, None])

    @cached_property
    def corner_xyz(self) -> np.ndarray:
        return sphere.lonlat_to_xyz(self.corner_lon[:1], self.corner_lat[:, :1])

    @property
    def is_global(self) -> bool:
        if self._is_global is None:
            span = self.lon_bounds[-1, 1] - self.lon_bounds[0, 0]
            contiguous = np.allclose(self.lon_bounds[1:, 0], self.lon_bounds[:-1, 1], rtol=0, atol=1e-9)
            reaches_poles = self.lat_bounds.min() <= -90.0 + 1e-9 and self.lat_bounds.max() >= 90.0 - 1e-9
            self._is_global = bool(contiguous and abs(span - 360.0) < 1e-9 and reaches_poles)
        return bool(self._is_global)

    @property
    def band_area(self) -> np.ndarray:
        """Exact areas of the cells bounded by parallels and meridians: ``dlon * (sin lat_n - sin lat_s)``."""
        dlon = np.deg2rad(self.lon_bounds[:, 1] - self.lon_bounds[:, 0])
        dsin = np.abs(np.diff(np.sin(np.deg2rad(self.lat_bounds)), axis=1))[:, 0]
        return dsin[:, None] * dlon[None, :]

    def coords(self) -> dict[str, tuple]:
        return {
            self.dims[0]: (self.dims[0], self.lat, {"standard_name": "latitude", "units": "degrees_north"}),
            self.dims[1]: (self.dims[1], self.lon, {"standard_name": "longitude", "units": "degrees_east"}),
        }

    def to_dataset(self):
        """CF dataset with 1-D ``latitude``/``longitude``, their ``_bounds`` ``(n, 2)``, mask and area."""
        import xarray as xr

        lat_dim, lon_dim = self.dims
        coords = self.coords()
        coords[lat_dim][2]["bounds"] = f"{lat_dim}_bounds"
        coords[lon_dim][2]["bounds"] = f"{lon_dim}_bounds"
        return xr.Dataset(
            {
                f"{lat_dim}_bounds": ((lat_dim, "nv"), self.lat_bounds, {"units": "degrees_north"}),
                f"{lon_dim}_bounds": ((lon_dim, "nv"), self.lon_bounds, {"units": "degrees_east"}),
                "mask": (self.dims, self.mask.astype(np.int8), {"long_name": "1 = active cell"}),
                "area": (self.dims, self.area, {"units": "sr", "long_name": "great-circle cell area"}),
            },
            coords=coords,
        )


class GaussianGrid(LatLonGrid):
    """Regular Gaussian grid: ``nlat`` Gauss-Legendre latitudes, ``nlon`` (default ``2 nlat``) longitudes.

    ECMWF and CDO name Gaussian grids by the number of latitudes between pole and equator:
    N48 (F48, CDO's ``n48``) is ``GaussianGrid(96, 192)``, also ``GaussianGrid.from_n(48)``.

    Latitudes are ``arcsin`` of the roots of the Legendre polynomial ``P_nlat``; longitudes
    ``i * 360/nlon`` starting at 0 (cells centred on them). Latitude bounds (``bounds``):
    ``"weights"`` (default) puts the edges where ``sin(lat)`` accumulates the Gaussian quadrature
    weights, so each band's exact area is ``2 pi w_j``; ``"midpoint"`` puts them halfway between
    neighbouring latitudes in degrees (as in the ESMF reference grid files).
    """

    def __init__(
        self,
        nlat: int,
        nlon: int | None = None,
        *,
        lat_order: str = "descending",
        bounds: str = "weights",
        mask: np.ndarray | None = None,
    ) -> None:
        nlon = 2 * nlat if nlon is None else nlon
        x, w = np.polynomial.legendre.leggauss(nlat)
        self.weights = w
        lat = np.rad2deg(np.arcsin(x))
        if bounds == "weights":
            sin_edges = np.concatenate([[-1.0], -1.0 + np.cumsum(w)])
            sin_edges[-1] = 1.0
            edges = np.rad2deg(np.arcsin(np.clip(sin_edges, -1.0, 1.0)))
        elif bounds == "midpoint":
            edges = np.concatenate([[-90.0], 0.5 * (lat[:-1] + lat[1:]), [90.0]])
        else:
            raise RegridError(f"GaussianGrid bounds must be 'weights' or 'midpoint', got {bounds!r}")
        lat_b = np.stack([edges[:-1], edges[1:]], axis=-1)
        dlon = 360.0 / nlon
        lon = np.arange(nlon) * dlon
        lon_b = np.stack([lon - dlon / 2, lon + dlon / 2], axis=-1)
        if lat_order == "descending":
            lat, lat_b, self.weights = lat[::-1], lat_b[::-1, ::-1], w[::-1]
        elif lat_order != "ascending":
            raise RegridError(f"lat_order must be 'descending' or 'ascending', got {lat_order!r}")
        self._init_rectilinear(lat, lon, lat_b, lon_b, mask, f"GaussianGrid({nlat}, {nlon})")

    @classmethod
    def from_n(cls, n: int, **kwargs) -> GaussianGrid:
        """The regular Gaussian grid N``n``: ``2n`` latitudes (``n`` per hemisphere) x ``4n`` longitudes."""
        return cls(2 * n, 4 * n, **kwargs)


class CurvilinearGrid(Grid):
    """Curvilinear grid given by 2-D centres and 4 corners per cell (e.g. rotated-pole, tripolar ocean).

    Corners may come in either rotation sense; clockwise cells are reordered to counter-clockwise.
    """

    def __init__(
        self,
        center_lat: np.ndarray,
        center_lon: np.ndarray,
        corner_lat: np.ndarray,
        corner_lon: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        is_global: bool | None = None,
        name: str = "CurvilinearGrid",
    ) -> None:
        super().__init__(center_lat, center_lon, corner_lat, corner_lon, mask, is_global=is_global, name=name)

    @classmethod
    def rotated_pole(
        cls,
        rlat: np.ndarray,
        rlon: np.ndarray,
        *,
        pole_lat: float,
        pole_lon: float,
        mask: np.ndarray | None = None,
    ) -> CurvilinearGrid:
        """Rotated-pole grid from 1-D rotated centres (CF ``rotated_latitude_longitude``).

        Cell edges lie halfway between the rotated centres (half a spacing beyond the outer ones);
        geographic centres and corners are the transforms of the rotated ones. ``pole_lat``/``pole_lon``
        are the geographic position of the rotated north pole.
        """
        rlat = np.asarray(rlat, dtype=np.float64)
        rlon = np.asarray(rlon, dtype=np.float64)
        _check_monotonic(rlat, "rotated latitude", increasing_only=True)
        _check_monotonic(rlon, "rotated longitude", increasing_only=True)
        rlat_e = np.concatenate([_bounds_from_centers(rlat)[:, 0], [_bounds_from_centers(rlat)[-1, 1]]])
        rlon_e = np.concatenate([_bounds_from_centers(rlon)[:, 0], [_bounds_from_centers(rlon)[-1, 1]]])
        c_rlat, c_rlon = np.meshgrid(rlat, rlon, indexing="ij")
        s, n = rlat_e[:-1][:, None], rlat_e[1:][:, None]
        w, e = rlon_e[:-1][None, :], rlon_e[1:][None, :]
        ones = np.ones(c_rlat.shape)
        v_rlat = np.stack([s * ones, s * ones, n * ones, n * ones], axis=-1)
        v_rlon = np.stack([w * ones, e * ones, e * ones, w * ones], axis=-1)
        clat, clon = sphere.rotated_to_geographic(c_rlat, c_rlon, pole_lat, pole_lon)
        vlat, vlon = sphere.rotated_to_geographic(v_rlat, v_rlon, pole_lat, pole_lon)
        grid = cls(clat, clon, vlat, vlon, mask=mask, name=f"rotated-pole grid (pole {pole_lat}N {pole_lon}E)")
        grid.rlat, grid.rlon = rlat, rlon
        return grid


# -- helpers -------------------------------------------------------------------------------------
def _check_monotonic(values: np.ndarray, what: str, *, increasing_only: bool) -> None:
    if values.ndim != 1 or values.size < 2:
        raise RegridError(f"{what} centres must be a 1-D array of at least 2 values, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise RegridError(f"{what} centres contain NaN or infinite values")
    d = np.diff(values)
    if np.all(d > 0) or (not increasing_only and np.all(d < 0)):
        return
    bad = int(np.flatnonzero(d <= 0)[0] if increasing_only or d[0] > 0 else np.flatnonzero(d >= 0)[0])
    order = "strictly increasing" if increasing_only else "strictly monotonic"
    raise RegridError(
        f"{what} centres must be {order}; values {values[bad]!r} and {values[bad + 1]!r} at indices "
        f"{bad} and {bad + 1} break the order (sort the coordinate, e.g. roll longitudes to start at the seam)"
    )


def _bounds_from_centers(c: np.ndarray) -> np.ndarray:
    """``(n, 2)`` cell bounds halfway between centres, outer ones half a spacing beyond."""
    mid = 0.5 * (c[:-1] + c[1:])
    edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def _degrees(var) -> np.ndarray:
    values = np.asarray(var[:], dtype=np.float64)
    units = getattr(var, "units", "degrees").lower()
    return np.rad2deg(values) if units.startswith("rad") else values


def _rectilinear_from_corners(clat, clon, vlat, vlon) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lat_bounds, lon_bounds)`` when SCRIP cells are lat-lon rectangles in SW, SE, NE, NW order."""
    lat_rows, lon_cols = clat[:, :1], clon[:1, :]
    if not (np.all(clat == lat_rows) and np.all(clon == lon_cols)):
        return None
    south, north = vlat[:, 0, 0], vlat[:, 0, 2]
    west, east = vlon[0, :, 0], vlon[0, :, 1]
    expected_lat = np.stack([south, south, north, north], axis=-1)[:, None, :]
    expected_lon = np.stack([west, east, east, west], axis=-1)[None, :, :]
    if not (np.all(vlat == expected_lat) and np.all(vlon == expected_lon) and np.all(north > south)):
        return None
    try:
        _check_monotonic(clat[:, 0], "latitude", increasing_only=False)
        _check_monotonic(clon[0], "longitude", increasing_only=True)
    except RegridError:
        return None
    ascending = clat[1, 0] > clat[0, 0]
    lat_b = np.stack([south, north], axis=-1) if ascending else np.stack([north, south], axis=-1)
    return lat_b, np.stack([west, east], axis=-1)


def _find_coord(ds, standard_name: str, names: tuple[str, ...]) -> str:
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name") == standard_name:
            return str(name)
    for name in names:
        if name in ds.variables:
            return name
    raise RegridError(
        f"dataset has no {standard_name} coordinate: expected a variable with standard_name="
        f"{standard_name!r} or named one of {names}"
    )


def _bounds_of(ds, coord) -> np.ndarray | None:
    name = coord.attrs.get("bounds")
    if name is None:
        return None
    if name not in ds.variables:
        raise RegridError(f"coordinate {coord.name!r} names bounds variable {name!r}, which is not in the dataset")
    return np.asarray(ds[name].values, dtype=np.float64)
