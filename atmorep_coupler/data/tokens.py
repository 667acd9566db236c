"""Cubes <-> tokens, and the metadata that tells the model where and when each token lies.

A neighbourhood of one field is a cube ``[B, L, T*t, Y*y, X*x]`` (samples, levels, time steps,
latitude rows, longitude columns). Tokens are its ``[t, y, x]`` blocks: ``[B, L, T, Y, X, t, y, x]``.

Token metadata: the reference fed raw ``(year, day of year, hour, level,
lat, lon, ...)`` into a zero-initialised linear layer, so ``lon <= 360`` and ``level <= 137`` swamped
everything. Here every feature is bounded and periodic quantities are on the circle:

====================  ===============================================================
``sin_doy, cos_doy``  day of year of the token's centre time, as an angle (2π per year)
``sin_hour, cos_hour``  hour of day of the centre time (2π per day)
``sin_lat, cos_lat``  latitude of the token centre
``sin_lon, cos_lon``  longitude of the token centre (circular mean, so tokens across 0° are right)
``log_pressure``      ``ln(1000 hPa / p) / ln(1000)``: 0 at 1000 hPa, 1 at 1 hPa; 0 for surface fields
``surface``           1 for surface fields and scalar series, 0 for pressure levels
====================  ===============================================================

The absolute year is left out on purpose: a model trained on one period would extrapolate it badly,
and the slow forcing (CO2-equivalent, SST) enters as input-only fields instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["META_FEATURES", "tokenize", "detokenize", "token_metadata", "log_pressure"]

META_FEATURES = (
    "sin_doy",
    "cos_doy",
    "sin_hour",
    "cos_hour",
    "sin_lat",
    "cos_lat",
    "sin_lon",
    "cos_lon",
    "log_pressure",
    "surface",
)

_P_REF_HPA = 1000.0


def tokenize(cube, token_size: Sequence[int]):
    """``[..., T*t, Y*y, X*x] -> [..., T, Y, X, t, y, x]`` (numpy array or torch tensor)."""
    t, y, x = token_size
    *lead, nt, ny, nx = cube.shape
    if nt % t or ny % y or nx % x:
        raise ValueError(f"cube of shape {cube.shape} does not split into tokens of {list(token_size)}")
    T, Y, X = nt // t, ny // y, nx // x
    n = len(lead)
    blocks = cube.reshape(*lead, T, t, Y, y, X, x)
    order = (*range(n), n, n + 2, n + 4, n + 1, n + 3, n + 5)
    return blocks.transpose(order) if isinstance(blocks, np.ndarray) else blocks.permute(order)


def detokenize(tokens):
    """Inverse of :func:`tokenize`: ``[..., T, Y, X, t, y, x] -> [..., T*t, Y*y, X*x]``."""
    *lead, T, Y, X, t, y, x = tokens.shape
    n = len(lead)
    order = (*range(n), n, n + 3, n + 1, n + 4, n + 2, n + 5)
    blocks = tokens.transpose(order) if isinstance(tokens, np.ndarray) else tokens.permute(order)
    return blocks.reshape(*lead, T * t, Y * y, X * x)


def log_pressure(levels_hpa: Sequence[float]) -> np.ndarray:
    """``ln(1000 / p) / ln(1000)``: 0 at 1000 hPa, 1 at 1 hPa (roughly height over the atmosphere)."""
    p = np.asarray(levels_hpa, dtype=np.float64)
    return np.log(_P_REF_HPA / p) / np.log(_P_REF_HPA)


def _time_features(times: np.ndarray, t: int) -> np.ndarray:
    """sin/cos of day of year and hour of the token centre time: ``[B, T*t] -> [B, T, 4]``."""
    B, nt = times.shape
    steps = times.astype("datetime64[ns]").astype(np.int64).reshape(B, nt // t, t)
    centre = (steps[..., 0] + (steps[..., -1] - steps[..., 0]) // 2).astype("datetime64[ns]")
    year_start = centre.astype("datetime64[Y]")
    year_days = ((year_start + 1).astype("datetime64[D]") - year_start.astype("datetime64[D]")).astype(float)
    day = (centre - year_start.astype("datetime64[ns]")) / np.timedelta64(1, "D")
    hour = (centre - centre.astype("datetime64[D]").astype("datetime64[ns]")) / np.timedelta64(1, "h")
    doy_angle = 2 * np.pi * day / year_days
    hour_angle = 2 * np.pi * hour / 24.0
    return np.stack([np.sin(doy_angle), np.cos(doy_angle), np.sin(hour_angle), np.cos(hour_angle)], -1)


def _lat_features(lat: np.ndarray, y: int) -> np.ndarray:
    """sin/cos of the token-centre latitude: ``[B, Y*y] -> [B, Y, 2]``."""
    B, ny = lat.shape
    centre = np.deg2rad(lat.reshape(B, ny // y, y).mean(-1))
    return np.stack([np.sin(centre), np.cos(centre)], -1)


def _lon_features(lon: np.ndarray, x: int) -> np.ndarray:
    """sin/cos of the token-centre longitude (circular mean): ``[B, X*x] -> [B, X, 2]``."""
    B, nx = lon.shape
    rad = np.deg2rad(lon.reshape(B, nx // x, x))
    s, c = np.sin(rad).mean(-1), np.cos(rad).mean(-1)
    centre = np.arctan2(s, c)
    return np.stack([np.sin(centre), np.cos(centre)], -1)


def token_metadata(
    times: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    levels_hpa: Sequence[float],
    token_size: Sequence[int],
) -> np.ndarray:
    """Metadata ``[B, L, T, Y, X, len(META_FEATURES)]`` (float32) for one field's tokens.

    ``times [B, T*t]`` (datetime64), ``lat [B, Y*y]`` and ``lon [B, X*x]`` (degrees) are the grid
    coordinates of the neighbourhoods; ``levels_hpa`` is empty for surface fields and series (L = 1).
    """
    t, y, x = token_size
    tf = _time_features(np.asarray(times), t)  # [B, T, 4]
    la = _lat_features(np.asarray(lat, dtype=np.float64), y)  # [B, Y, 2]
    lo = _lon_features(np.asarray(lon, dtype=np.float64), x)  # [B, X, 2]
    if len(levels_hpa):
        lev = np.stack([log_pressure(levels_hpa), np.zeros(len(levels_hpa))], -1)  # [L, 2]
    else:
        lev = np.array([[0.0, 1.0]])
    B, T, Y, X, L = tf.shape[0], tf.shape[1], la.shape[1], lo.shape[1], lev.shape[0]
    shape = (B, L, T, Y, X)
    parts = [
        np.broadcast_to(tf[:, None, :, None, None, :], shape + (4,)),
        np.broadcast_to(la[:, None, None, :, None, :], shape + (2,)),
        np.broadcast_to(lo[:, None, None, None, :, :], shape + (2,)),
        np.broadcast_to(lev[None, :, None, None, None, :], shape + (2,)),
    ]
    return np.concatenate(parts, axis=-1).astype(np.float32)
