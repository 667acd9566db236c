"""Masked prediction of whole global windows: the network run on every tile of a global tiling.

One :class:`GlobalPredictor` serves a batch of independent global windows at once -- the ensemble
members of one component, or many components stepped together (forecasts from many start dates,
:func:`atmorep_coupler.component.atmorep.step_together`): all their tiles go through the network in
chunks of ``tile_batch_size`` windows, so one network call carries tiles of several windows. Each
window has its own dates (token metadata) and its own tail head (or the mean of the heads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable

import numpy as np
import torch

from atmorep_coupler.component.tiling import GlobalTiling
from atmorep_coupler.data.tokens import detokenize, token_metadata, tokenize
from atmorep_coupler.model.config import FieldConfig, ModelConfig
from atmorep_coupler.model.masking import MaskedField

__all__ = ["GlobalPredictor"]

#: ``network(masked, meta) -> {field: EnsembleOutput}``, the Multiformer's call signature.
Network = Callable[..., Mapping]


class GlobalPredictor:
    """A network of ``config`` over ``tiling`` for batches of global windows on the grid
    ``latitudes x longitudes``."""

    def __init__(self, config: ModelConfig, tiling: GlobalTiling, latitudes: np.ndarray, longitudes: np.ndarray, *,
                 device: torch.device, tile_batch_size: int) -> None:
        self.config, self.tiling = config, tiling
        self.device, self.tile_batch_size = device, tile_batch_size
        self._lat = np.asarray(latitudes)[tiling.rows.numpy()]  # [n_tiles, ny]
        self._lon = np.asarray(longitudes)[tiling.cols.numpy()]  # [n_tiles, nx]

    @torch.no_grad()
    def predict(self, network: Network, windows: Mapping[str, torch.Tensor], hidden: torch.Tensor,
                targets: torch.Tensor, times: np.ndarray, heads: Sequence[int | None]) -> tuple[dict, dict]:
        """Masked prediction of ``B`` global windows by ``network``.

        ``windows``: normalised ``[B, L, nt, nlat, nlon]`` per field (input-only fields may be
        broadcast views); ``hidden``/``targets``: point masks ``[nt, nlat, nlon]`` shared by all
        windows (a tile's token is hidden, or a target, when any of its points is); ``times``:
        ``datetime64 [B, nt]``; ``heads``: per window the tail head to take, None for the mean of the
        heads. Returns per predicted field the blended prediction ``[B, L, nt, nlat, nlon]`` (float64;
        the window's values where no tile predicted) and the weight sum (0 there).
        """
        tiling, n = self.tiling, self.tiling.count
        B = len(heads)
        when = np.repeat(np.asarray(times), n, axis=0)  # window-major: window b, tile k -> b * n + k
        lat, lon = np.tile(self._lat, (B, 1)), np.tile(self._lon, (B, 1))
        head = torch.tensor([-1 if h is None else int(h) for h in heads], device=self.device).repeat_interleave(n)
        tokens, meta, hide, aim = {}, {}, {}, {}
        for f in self.config.fields:
            x = tiling.gather(windows[f.name].to(self.device)).movedim(0, 1)  # [B, n, L, nt, ny, nx]
            tokens[f.name] = tokenize(x.reshape(B * n, *x.shape[2:]), f.token_size)  # [B*n, L, T, Y, X, t, y, x]
            meta[f.name] = torch.from_numpy(token_metadata(when, lat, lon, f.levels, f.token_size)).to(self.device)
            shape = tokens[f.name].shape[:5]
            if f.predicted:
                hide[f.name] = self._token_mask(hidden, f).repeat(B, 1, 1, 1, 1).expand(shape)
                aim[f.name] = (self._token_mask(targets, f) | self._token_mask(hidden, f)).repeat(B, 1, 1, 1, 1).expand(shape)
            else:
                hide[f.name] = aim[f.name] = torch.zeros(shape, dtype=torch.bool, device=self.device)
        predicted = [f for f in self.config.fields if f.predicted]
        out = {f.name: torch.zeros_like(tokens[f.name]) for f in predicted}
        for start in range(0, B * n, self.tile_batch_size):
            chunk = slice(start, start + self.tile_batch_size)
            masked = {}
            for name, x in tokens.items():
                inputs = torch.where(_points(hide[name][chunk], x.ndim), torch.zeros((), device=x.device), x[chunk])
                masked[name] = MaskedField(inputs, hide[name][chunk], aim[name][chunk], x.new_empty(0))
            result = network(masked, {name: m[chunk] for name, m in meta.items()})
            for f in predicted:
                values = _head_values(result[f.name], head[chunk], aim[f.name][chunk])
                out[f.name][chunk][aim[f.name][chunk]] = values.to(out[f.name].dtype)
        blended, weights = {}, {}
        for f in predicted:
            values = detokenize(out[f.name])  # [B*n, L, nt, ny, nx]
            mask = detokenize(_points(aim[f.name], 8).expand(out[f.name].shape))
            split = lambda v: v.reshape(B, n, *v.shape[1:]).movedim(1, 0)  # noqa: E731  [n, B, L, nt, ny, nx]
            value, weight = tiling.blend(split(values), split(mask))
            window = windows[f.name].to(self.device).double()
            blended[f.name] = torch.where(weight > 0, value, window)
            weights[f.name] = weight
        return blended, weights

    def _token_mask(self, points: torch.Tensor, f: FieldConfig) -> torch.Tensor:
        """Point mask ``[nt, nlat, nlon]`` -> per-tile token mask ``[n_tiles, 1, T, Y, X]`` (any point set)."""
        tiles = tokenize(self.tiling.gather(points.to(self.device)), f.token_size)  # [n, T, Y, X, t, y, x]
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
