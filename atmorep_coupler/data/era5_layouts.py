"""The two public ERA5 layouts, written from any canonical store: WeatherBench 2 and ARCO-ERA5.

``python -m atmorep_coupler.data era5-layout {weatherbench2,arco-era5} SOURCE OUT`` writes ``SOURCE``
(e.g. the default dataset) the way the public ERA5 copies are laid out, so that the whole path --
statistics, training, evaluation, the component, a coupled run -- can be tried on a laptop before a
byte of ERA5 is fetched, and so that the tests exercise exactly what users open:

================  ========================================  ========================================
                  ``weatherbench2``                         ``arco-era5``
================  ========================================  ========================================
dims              ``time, level, longitude, latitude``      ``time, level, latitude, longitude``
latitude          ascending, -90 .. 90, rows on the poles   descending, 90 .. -90, rows on the poles
longitude         0 .. 360 - spacing, first column on 0°    the same
level             ``int64`` hPa, ``units: millibars``       the same
time step         6-hourly                                  the source's (ARCO-ERA5 itself is hourly)
zarr              format 2, consolidated metadata, one time step per chunk (ARCO's ``chunk-1``)
================  ========================================  ========================================

Variables carry ERA5's names and ECMWF unit spellings: ``temperature`` (K), ``geopotential``
(``m**2 s**-2``), ``u_component_of_wind``/``v_component_of_wind`` (``m s**-1``), ``specific_humidity``
(``kg kg**-1``), ``2m_temperature`` (K), ``sea_surface_temperature`` (K, **NaN over land**),
``toa_incident_solar_radiation`` (**J m**-2**, accumulated over the hour before the valid time) and
the static ``land_sea_mask`` (``(0 - 1)``, no time axis).

What the values are: the source's fields conservatively regridded (``conservative_normed``) to the
grid with rows on the poles; ``2m_temperature`` is the 1000 hPa temperature; ``specific_humidity`` is
the saturation specific humidity at 60 % relative humidity (Bolton 1980 over water) of the
temperature; the SST is the source's SST over a schematic land mask (three continents); the insolation
is the source's flux times 3600 s. Attributes say so, so no one takes the stand-in for ERA5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from atmorep_coupler.data.store import ERA5Store, open_store, quiet_zarr
from atmorep_coupler.errors import DataError

__all__ = ["LAYOUTS", "Layout", "write_layout", "land_mask"]


@dataclass(frozen=True)
class Layout:
    """How one public copy of ERA5 lays out its zarr store."""

    name: str
    horizontal: tuple[str, str]  # dim order after time and level
    ascending: bool  # latitude order
    hours: int | None  # time step in hours; None: the source's
    description: str


LAYOUTS = {
    "weatherbench2": Layout("weatherbench2", ("longitude", "latitude"), True, 6,
                            "WeatherBench 2 (gs://weatherbench2/datasets/era5/*_equiangular_with_poles_conservative.zarr)"),
    "arco-era5": Layout("arco-era5", ("latitude", "longitude"), False, None,
                        "ARCO-ERA5 (gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3)"),
}
ACCUMULATION_S = 3600.0  # ERA5 accumulates over the hour before the valid time
RELATIVE_HUMIDITY = 0.6
#: Schematic continents (latitude south, north; longitude west, east in degrees east) for the SST mask.
CONTINENTS = ((-55.0, 70.0, 235.0, 310.0), (-35.0, 70.0, 0.0, 140.0), (-90.0, -70.0, 0.0, 360.0))
_SOURCE_VARIABLES = ("temperature", "geopotential", "u_component_of_wind", "v_component_of_wind",
                     "sea_surface_temperature", "toa_incident_solar_radiation")


def land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """True over the schematic continents, ``[lat, lon]``."""
    lat2, lon2 = np.meshgrid(lat, np.mod(lon, 360.0), indexing="ij")
    land = np.zeros(lat2.shape, dtype=bool)
    for south, north, west, east in CONTINENTS:
        land |= (lat2 >= south) & (lat2 <= north) & (lon2 >= west) & (lon2 <= east)
    return land


def saturation_specific_humidity(temperature: np.ndarray, pressure_hpa: np.ndarray) -> np.ndarray:
    """``q = 0.622 e / (p - 0.378 e)`` with Bolton's (1980) saturation vapour pressure over water."""
    celsius = temperature - 273.15
    e = 6.112 * np.exp(17.67 * celsius / (celsius + 243.5))  # hPa
    e = np.minimum(e, 0.5 * pressure_hpa)  # keep q finite in a hot, low-pressure corner
    return 0.622 * e / (pressure_hpa - 0.378 * e)


def write_layout(source: str | os.PathLike, out: str | os.PathLike, layout: str = "weatherbench2", *,
                 progress: bool = True, block: int = 64) -> Path:
    """Write ``source`` (a canonical ERA5-layout store with the default data's variables) to ``out`` in
    the public ``layout`` (module docstring); returns ``out``."""
    from atmorep_coupler.regrid.grids import LatLonGrid
    from atmorep_coupler.regrid.regridder import Regridder

    spec = LAYOUTS.get(layout)
    if spec is None:
        raise DataError(f"layout {layout!r} is not one of {sorted(LAYOUTS)}")
    src = open_store(source)
    missing = [v for v in _SOURCE_VARIABLES if v not in src.variables]
    if missing:
        raise DataError(f"store {str(source)!r}: lacks {missing}, which the {layout} stand-in is made from")
    out = Path(out)
    if out.exists():
        raise DataError(f"{out}: exists; remove it or choose another --out")
    spacing = 360.0 / src.longitudes.size
    lat = np.linspace(90.0, -90.0, int(round(180.0 / spacing)) + 1)  # rows on both poles, descending
    regrid = Regridder(LatLonGrid.from_centers(src.latitudes, src.longitudes), LatLonGrid.from_centers(lat, src.longitudes),
                       "conservative_normed", progress=False)
    land = land_mask(lat, src.longitudes)
    step = np.median(np.diff(src.times)) if src.times.size > 1 else np.timedelta64(0, "ns")
    stride = 1 if spec.hours is None else max(1, int(np.timedelta64(spec.hours, "h") // step))
    times = np.flatnonzero((src.times - src.times[0]) % (stride * step) == np.timedelta64(0, "ns"))
    levels = src.levels
    with tqdm(total=times.size, desc=f"{layout} layout", unit="time", disable=not progress) as bar:
        for first in range(0, times.size, block):
            index = times[first:first + block]
            ds = _block(src, index, regrid, lat, land, levels, spec)
            with quiet_zarr():
                if first == 0:
                    encoding = {name: {"chunks": (1, *ds[name].shape[1:])} for name in ds.data_vars
                                if "time" in ds[name].dims}
                    ds.to_zarr(out, mode="w-", zarr_format=2, consolidated=True, encoding=encoding)
                else:
                    ds.drop_vars("land_sea_mask").to_zarr(out, append_dim="time", consolidated=True)
            bar.update(index.size)
    return out


def _block(src: ERA5Store, index: np.ndarray, regrid, lat: np.ndarray, land: np.ndarray, levels: np.ndarray,
           spec: Layout) -> xr.Dataset:
    """Times ``index`` of the source in the layout: regridded, derived and ordered as ``spec`` says."""

    def on_poles(name: str, **kw) -> np.ndarray:
        return np.asarray(regrid.apply(src.read(name, time=index, **kw).astype(np.float64)), dtype=np.float32)

    upper = {name: on_poles(name, levels=list(levels)) for name in _SOURCE_VARIABLES[:2]}
    u, v = (src.read(name, time=index, levels=list(levels)).astype(np.float64) for name in _SOURCE_VARIABLES[2:4])
    upper["u_component_of_wind"], upper["v_component_of_wind"] = (
        np.asarray(x, dtype=np.float32) for x in regrid.apply_vector(u, v))  # smooth across the poles
    pressure = levels.astype(np.float64)[None, :, None, None]
    humidity = RELATIVE_HUMIDITY * saturation_specific_humidity(upper["temperature"].astype(np.float64), pressure)
    bottom = int(np.argmax(levels))
    sst = on_poles("sea_surface_temperature")
    sst[:, land] = np.nan
    tisr = on_poles("toa_incident_solar_radiation") * ACCUMULATION_S
    level_dims, surface_dims = ("time", "level", *spec.horizontal), ("time", *spec.horizontal)
    order = slice(None, None, -1) if spec.ascending else slice(None)

    def put(values: np.ndarray, dims: tuple[str, ...]) -> np.ndarray:
        values = values[..., order, :]  # latitude in the layout's order
        return np.swapaxes(values, -1, -2) if spec.horizontal[0] == "longitude" else values

    attrs = {
        "temperature": {"units": "K", "long_name": "Temperature", "short_name": "t", "standard_name": "air_temperature"},
        "geopotential": {"units": "m**2 s**-2", "long_name": "Geopotential", "short_name": "z",
                         "standard_name": "geopotential"},
        "u_component_of_wind": {"units": "m s**-1", "long_name": "U component of wind", "short_name": "u",
                                "standard_name": "eastward_wind"},
        "v_component_of_wind": {"units": "m s**-1", "long_name": "V component of wind", "short_name": "v",
                                "standard_name": "northward_wind"},
    }
    data = {name: (level_dims, put(upper[name], level_dims), attrs[name]) for name in attrs}
    data["specific_humidity"] = (level_dims, put(humidity.astype(np.float32), level_dims), {
        "units": "kg kg**-1", "long_name": "Specific humidity", "short_name": "q", "standard_name": "specific_humidity",
        "comment": f"stand-in: saturation specific humidity at {RELATIVE_HUMIDITY:.0%} relative humidity of temperature"})
    data["2m_temperature"] = (surface_dims, put(upper["temperature"][:, bottom], surface_dims), {
        "units": "K", "long_name": "2 metre temperature", "short_name": "t2m",
        "comment": f"stand-in: the {levels[bottom]:g} hPa temperature"})
    data["sea_surface_temperature"] = (surface_dims, put(sst, surface_dims), {
        "units": "K", "long_name": "Sea surface temperature", "short_name": "sst",
        "comment": "NaN over land (a schematic land mask), as ERA5"})
    data["toa_incident_solar_radiation"] = (surface_dims, put(tisr, surface_dims), {
        "units": "J m**-2", "long_name": "TOA incident solar radiation", "short_name": "tisr",
        "comment": "accumulated over the hour before the valid time, as ERA5 (stand-in: the source's flux x 3600 s)"})
    data["land_sea_mask"] = (spec.horizontal, put(land.astype(np.float32)[None], surface_dims)[0], {
        "units": "(0 - 1)", "long_name": "Land-sea mask", "short_name": "lsm"})
    lat_out = lat[order]
    coords = {
        "time": ("time", src.times[index]),
        "level": ("level", levels.astype(np.int64), {"units": "millibars", "long_name": "pressure_level"}),
        "latitude": ("latitude", lat_out, {"units": "degrees_north", "long_name": "latitude"}),
        "longitude": ("longitude", src.longitudes.astype(np.float64), {"units": "degrees_east", "long_name": "longitude"}),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {"title": f"{spec.description}: layout stand-in", "source": f"atmorep_coupler from {src.path}"}
    return ds
