"""Masked prediction of whole global windows: the network run on every tile of a global tiling.

:func:`predict_global` is the one global inference path: the component's steps, its zero-shot tasks,
forecasts from many start dates stepped together (the verification) all call it. It serves a batch of
independent global windows at once -- the ensemble members of one component, or many components
(:func:`atmorep_coupler.component.atmorep.step_together`): all their tiles go through the network in
chunks of ``tile_batch_size`` windows, so one network call carries tiles of several windows. Each
window has its own dates (token metadata) and its own tail head (or the mean of the heads). A pure
function of its arguments: no state is kept between calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import numpy as np
import torch

from atmorep_coupler.data.tokens import detokenize, token_metadata, tokenize
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.masking import MaskedField
from atmorep_coupler.model.tiling import GlobalTiling

__all__ = ["predict_global"]

#: ``network(masked, meta) -> {field: EnsembleOutput}``, the Multiformer's call signature.
Network = Callable[..., Mapping]


@torch.no_grad()
def predict_global(network: Network, windows: Mapping[str, torch.Tensor], hidden: torch.Tensor, tiling: GlobalTiling,
                   *, config: ModelConfig, latitudes: np.ndarray, longitudes: np.ndarray, times: np.ndarray,
                   heads: Sequence[int | None], targets: torch.Tensor | None = None, device: torch.device,
                   tile_batch_size: int) -> tuple[dict, dict]:
    """Masked prediction of ``B`` global windows on the grid ``latitudes x longitudes`` by ``network``
    (a model of ``config``) over every tile of ``tiling``.

    ``windows``: normalized ``[B, L, nt, nlat, nlon]`` per field (input-only fields may be broadcast
    views); ``hidden``/``targets`` (default: ``hidden``): point masks ``[nt, nlat, nlon]`` shared by all
    windows (a tile's token is hidden, or a target, when any of its points is); ``times``:
    ``datetime64 [B, nt]``; ``heads``: per window the tail head to take, None for the mean of the heads.
    Returns per predicted field the blended prediction ``[B, L, nt, nlat, nlon]`` (float64; the window's
    values where no tile predicted) and the weight sum (0 there).

    Cost: tokens and metadata are cut ``tile_batch_size`` tiles at a time, so memory holds one chunk of
    inputs, and predictions are kept and blended only for the token time slices that hold a target (the
    last one in a forecast step).
    """
    targets = hidden if targets is None else targets
    tile_lat = np.asarray(latitudes)[tiling.rows.numpy()]  # [n_tiles, ny]
    tile_lon = np.asarray(longitudes)[tiling.cols.numpy()]  # [n_tiles, nx]
    n = tiling.count
    B = len(heads)
    when = np.repeat(np.asarray(times), n, axis=0)  # window-major: window b, tile k -> b * n + k
    lat, lon = np.tile(tile_lat, (B, 1)), np.tile(tile_lon, (B, 1))
    head = torch.tensor([-1 if h is None else int(h) for h in heads], device=device).repeat_interleave(n)
    window_of = torch.arange(B).repeat_interleave(n)
    tile_of = torch.arange(n).repeat(B)
    predicted = [f for f in config.fields if f.predicted]
    hide, aim, span, out = {}, {}, {}, {}
    for f in predicted:
        hide[f.name] = _token_mask(tiling, hidden, f, device)  # [n, 1, T, Y, X]
        aim[f.name] = hide[f.name] | _token_mask(tiling, targets, f, device)
        aimed = torch.nonzero(aim[f.name].any(dim=(0, 1, 3, 4))).flatten()  # token time slices with a target
        span[f.name] = slice(int(aimed.min()), int(aimed.max()) + 1) if aimed.numel() else slice(0, 0)
        L, T, Y, X = f.num_levels, span[f.name].stop - span[f.name].start, *f.num_tokens[1:]
        out[f.name] = torch.zeros(B * n, L, T, Y, X, *f.token_size, device=device)
    wanted = any(s.stop > s.start for s in span.values())
    for start in range(0, B * n if wanted else 0, tile_batch_size):
        chunk = slice(start, start + tile_batch_size)
        tiles = tile_of[chunk]
        masked, meta = {}, {}
        for f in config.fields:
            x = tokenize(_gather(tiling, windows[f.name], window_of[chunk], tiles, device), f.token_size)  # [c, L, T, Y, X, t, y, x]
            meta[f.name] = torch.from_numpy(
                token_metadata(when[chunk], lat[chunk], lon[chunk], f.levels, f.token_size)).to(device)
            if f.predicted:
                hidden_tokens = hide[f.name][tiles].expand(x.shape[:5])
                target = aim[f.name][tiles].expand(x.shape[:5])
            else:
                hidden_tokens = target = torch.zeros(x.shape[:5], dtype=torch.bool, device=device)
            inputs = torch.where(_points(hidden_tokens, x.ndim), torch.zeros((), device=x.device), x)
            masked[f.name] = MaskedField(inputs, hidden_tokens, target, x.new_empty(0))
        result = network(masked, meta)
        for f in predicted:
            target = masked[f.name].target[:, :, span[f.name]]  # same targets, same order
            values = _head_values(result[f.name], head[chunk], target)
            out[f.name][chunk][target] = values.to(out[f.name].dtype)
    blended, weights = {}, {}
    for f in predicted:
        base = windows[f.name].to(device).double()
        blended[f.name], weights[f.name] = base.clone(), torch.zeros_like(base)
        if span[f.name].stop == span[f.name].start:
            continue  # nothing of this field was asked for
        t = f.token_size[0]
        steps = slice(span[f.name].start * t, span[f.name].stop * t)
        target = aim[f.name][:, :, span[f.name]].repeat(B, 1, 1, 1, 1)
        values = detokenize(out[f.name])  # [B*n, L, steps, ny, nx]
        mask = detokenize(_points(target, 8).expand(out[f.name].shape))
        split = lambda v: v.reshape(B, n, *v.shape[1:]).movedim(1, 0)  # noqa: E731  [n, B, L, steps, ny, nx]
        value, weight = tiling.blend(split(values), split(mask))
        blended[f.name][:, :, steps] = torch.where(weight > 0, value, base[:, :, steps])
        weights[f.name][:, :, steps] = weight
    return blended, weights


def _gather(tiling: GlobalTiling, windows: torch.Tensor, window: torch.Tensor, tiles: torch.Tensor,
            device: torch.device) -> torch.Tensor:
    """Tile ``tiles[i]`` of window ``window[i]`` out of ``windows [B, L, nt, nlat, nlon]``: ``[c, L, nt, ny, nx]``.
    Only the chunk's tiles are cut, so memory holds one chunk of inputs (a 0.25 degree grid has tens of
    thousands of tiles)."""
    rows = tiling.rows[tiles].to(windows.device)
    cols = tiling.cols[tiles].to(windows.device)
    grid_first = windows.to(device).permute(0, 3, 4, 1, 2)  # [B, nlat, nlon, L, nt]
    cut = grid_first[window.to(grid_first.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return cut.permute(0, 3, 4, 1, 2)


def _token_mask(tiling: GlobalTiling, points: torch.Tensor, f: FieldConfig, device: torch.device) -> torch.Tensor:
    """Point mask ``[nt, nlat, nlon]`` -> per-tile token mask ``[n_tiles, 1, T, Y, X]`` (any point set)."""
    tiles = tokenize(tiling.gather(points.to(device)), f.token_size)  # [n, T, Y, X, t, y, x]
    return tiles.flatten(-3).any(-1)[:, None]


def _head_values(ensemble, head: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per target token (in ``target.nonzero()`` order) the ensemble mean (head -1) or one head's member."""
    window = target.nonzero()[:, 0]
    head = head[window]
    members = ensemble.members  # [N, M, t, y, x]
    picked = members[torch.arange(members.shape[0], device=members.device), head.clamp_min(0)]
    return torch.where(_points(head < 0, picked.ndim), ensemble.mean, picked)


def _points(tokens: torch.Tensor, ndim: int) -> torch.Tensor:
    """A token mask viewed with trailing unit dims to broadcast over ``ndim`` dims."""
    return tokens.reshape(*tokens.shape, *([1] * (ndim - tokens.ndim)))
