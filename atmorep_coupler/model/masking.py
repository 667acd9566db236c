"""Masking strategies: which tokens the model must predict, and what it sees of them.

Each strategy turns the clean tokens of every field ``[B, L, T, Y, X, t, y, x]`` into a
:class:`MaskedField`: the model inputs, a ``hidden`` flag per token, a ``target`` flag per token, and
the target tokens ``tokens[target]`` (``[N, t, y, x]``, in the row-major order of
``target.nonzero()``).

Hidden tokens are zeroed in ``inputs`` and the model replaces their embedding by a *learned mask
embedding* (``multiformer.FieldEmbedding``). The reference code set them to 0, the normalized mean,
which the model cannot tell apart from a token that really is average; the learned vector is an
unambiguous "masked" flag, while the token's metadata and position are still added.

Strategies (``StrategyConfig.kind``):

- ``BERT``: per sample and level draw ``r ~ U(0, total)`` and select ``ceil(r * T*Y*X)`` tokens
  without replacement; each selected token is independently hidden (``mask``), noised
  (``x <- (1 - w) x + w eps``, ``w ~ U(0, 1)``, ``eps ~ N(0, 1)`` in normalized units; ``noise``) and
  coarsened (``coarsen``). Selected tokens all stay targets, distorted or not.
- ``forecast``: the last ``forecast_slices`` time slices (all levels and places) are hidden targets;
  ``context_noise`` optionally shifts the visible tokens of predicted fields (rollout-like errors).
- ``temporal_interpolation``: the slices ``interpolation_slices`` (default the middle one).
- ``spatial_interpolation``: a block of ``region = [Y', X']`` tokens at a random place, all times and
  levels (the same block for every field of a sample).
- ``identity``: nothing hidden, every token a target (auto-encoding, e.g. for downscaling heads).

Coarsening is real coarsening: the token is block-averaged over ``k x k`` points (``k`` from
``coarsen_factors``, ``k >= 2`` dividing the token) and expanded back piecewise-constant, so the block
means are kept exactly and all sub-block detail is gone. The reference resized to ``(ts, 2 ts]`` points
and back, which only smooths slightly.

Input-only fields are never masked: conditioning and forcing (SST, insolation, CO2) are known.

Randomness: one ``numpy`` generator per (field, level) from ``SeedSequence(seed,
spawn_key=key + (1, field, level))`` and one per batch for the strategy choice and region
(``key + (0,)``); ``key`` identifies the batch in its stream (see ``data.sampler``). Masks are thus a
pure function of (seed, key), independent of worker count, and adding a level or a field leaves the
masks of the others unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atmorep_coupler.model.config import FieldConfig, ModelConfig, StrategyConfig

__all__ = ["MaskedField", "Masker", "coarsen_tokens", "forecast_last_slice"]


@dataclass
class MaskedField:
    """Model input and targets of one field (see the module docstring)."""

    inputs: torch.Tensor  # [B, L, T, Y, X, t, y, x]
    hidden: torch.Tensor  # bool [B, L, T, Y, X]
    target: torch.Tensor  # bool [B, L, T, Y, X]
    targets: torch.Tensor  # [N, t, y, x] = clean tokens[target]

    @property
    def target_index(self) -> torch.Tensor:
        """``[N, 5]`` indices (sample, level, time, row, column) of the target tokens."""
        return self.target.nonzero()

    def to(self, device: torch.device | str) -> MaskedField:
        return MaskedField(*(v.to(device, non_blocking=True) for v in vars(self).values()))


def coarsen_tokens(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """Block-average ``[n, t, y, x]`` tokens over ``k x k`` points and expand back (piecewise constant)."""
    n, t, y, x = tokens.shape
    blocks = tokens.reshape(n, t, y // k, k, x // k, k).mean(dim=(3, 5), keepdim=True)
    return blocks.expand(n, t, y // k, k, x // k, k).reshape(n, t, y, x)


def _keyed_rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class Masker:
    """Applies the configured strategies to a batch of clean tokens (runs in loader workers)."""

    def __init__(self, config: ModelConfig, strategies: tuple[StrategyConfig, ...] | None = None):
        self.config = config
        self.strategies = strategies or config.strategies
        weights = np.array([s.weight for s in self.strategies], dtype=np.float64)
        self._weights = weights / weights.sum()

    def strategy(self, seed: int, key: tuple[int, ...]) -> tuple[StrategyConfig, np.random.Generator]:
        """The strategy of batch ``key``, and the batch generator after its draw (what ``__call__`` uses)."""
        batch_rng = _keyed_rng(seed, key + (0,))
        return self.strategies[batch_rng.choice(len(self.strategies), p=self._weights)], batch_rng

    def __call__(self, tokens: dict[str, torch.Tensor], seed: int, key: tuple[int, ...]) -> dict[str, MaskedField]:
        strategy, batch_rng = self.strategy(seed, key)
        region = self._region(strategy, batch_rng, next(iter(tokens.values())).shape[0])
        out = {}
        for index, field in enumerate(self.config.fields):
            x = tokens[field.name]
            if not field.predicted:
                out[field.name] = _unmasked(x)
            elif strategy.kind == "BERT":
                rngs = [_keyed_rng(seed, key + (1, index, level)) for level in range(x.shape[1])]
                out[field.name] = self._bert(field, x, rngs)
            else:
                out[field.name] = _structured(strategy, x, region)
                if strategy.context_noise > 0:
                    _noise_context(out[field.name], strategy.context_noise, _keyed_rng(seed, key + (2, index)))
        return out

    def _region(self, strategy: StrategyConfig, rng: np.random.Generator, batch: int) -> np.ndarray | None:
        """Corner ``[B, 2]`` of the hidden token block of spatial interpolation (shared by fields)."""
        if strategy.kind != "spatial_interpolation":
            return None
        _, Y, X = self.config.predicted_fields[0].num_tokens
        ry, rx = strategy.region
        return np.stack([rng.integers(0, Y - ry + 1, batch), rng.integers(0, X - rx + 1, batch)], -1)

    def _bert(self, field: FieldConfig, x: torch.Tensor, rngs: list[np.random.Generator]) -> MaskedField:
        B, L = x.shape[:2]
        S = field.tokens_per_level
        rates = field.masking
        factors = np.asarray(self.config.coarsen_factors)
        inputs = x.reshape(B, L, S, *field.token_size).clone()
        selected = torch.zeros(B, L, S, dtype=torch.bool)
        hidden = torch.zeros(B, L, S, dtype=torch.bool)
        for level, rng in enumerate(rngs):
            count = np.ceil(rng.uniform(0.0, rates.total, B) * S).astype(np.int64)
            rank = rng.random((B, S)).argsort(-1).argsort(-1)  # a uniform random permutation per sample
            sel = rank < count[:, None]
            hid = sel & (rng.random((B, S)) < rates.mask)
            noi = sel & ~hid & (rng.random((B, S)) < rates.noise)
            coarse = sel & ~hid & (rng.random((B, S)) < rates.coarsen)
            factor = np.where(coarse, rng.choice(factors, (B, S)), 0)
            weight = torch.from_numpy(rng.random(int(noi.sum()), dtype=np.float32)).view(-1, 1, 1, 1)
            eps = torch.from_numpy(rng.standard_normal((int(noi.sum()), *field.token_size), dtype=np.float32))
            tokens = inputs[:, level]  # view [B, S, t, y, x]
            noi_t = torch.from_numpy(noi)
            tokens[noi_t] = (1 - weight) * tokens[noi_t] + weight * eps
            for k in np.unique(factor[coarse]):
                where = torch.from_numpy(factor == k)
                tokens[where] = coarsen_tokens(tokens[where], int(k))
            tokens[torch.from_numpy(hid)] = 0.0
            selected[:, level], hidden[:, level] = torch.from_numpy(sel), torch.from_numpy(hid)
        shape = x.shape[:5]
        target = selected.reshape(shape)
        return MaskedField(inputs.reshape(x.shape), hidden.reshape(shape), target, x[target])


def forecast_last_slice(config: ModelConfig, tokens: dict[str, torch.Tensor]) -> dict[str, MaskedField]:
    """The plain forecast of every predicted field's last token time slice, nothing else hidden or noised
    (the masks a coupled run's step uses; :mod:`atmorep_coupler.training.rollout`)."""
    forecast = StrategyConfig(kind="forecast", forecast_slices=1)
    return {f.name: _structured(forecast, tokens[f.name], None) if f.predicted else _unmasked(tokens[f.name])
            for f in config.fields}


def _unmasked(x: torch.Tensor) -> MaskedField:
    none = torch.zeros(x.shape[:5], dtype=torch.bool)
    return MaskedField(x, none, none, x[none])


def _noise_context(masked: MaskedField, amplitude: float, rng: np.random.Generator) -> None:
    """Shift every visible token by ``sigma * eps`` (``sigma ~ U(0, amplitude)`` per sample and level, ``eps``
    one normal draw per token), in place; hidden tokens stay zero and the targets clean."""
    B, L, T, Y, X = masked.hidden.shape
    sigma = rng.uniform(0.0, amplitude, (B, L, 1, 1, 1)).astype(np.float32)
    eps = rng.standard_normal((B, L, T, Y, X), dtype=np.float32)
    shift = torch.from_numpy(sigma * eps).masked_fill_(masked.hidden, 0.0)
    masked.inputs += shift[(...,) + (None,) * (masked.inputs.ndim - 5)]


def _structured(strategy: StrategyConfig, x: torch.Tensor, region: np.ndarray | None) -> MaskedField:
    """forecast / temporal / spatial interpolation / identity: a deterministic token pattern."""
    B, L, T, Y, X = x.shape[:5]
    target = torch.zeros(B, L, T, Y, X, dtype=torch.bool)
    if strategy.kind == "forecast":
        target[:, :, T - strategy.forecast_slices :] = True
    elif strategy.kind == "temporal_interpolation":
        slices = list(strategy.interpolation_slices) or [T // 2]
        target[:, :, slices] = True
    elif strategy.kind == "spatial_interpolation":
        corner = torch.from_numpy(region)
        rows = torch.arange(Y)[None, :] - corner[:, :1]  # [B, Y] offset from the block corner
        cols = torch.arange(X)[None, :] - corner[:, 1:]
        in_rows = (rows >= 0) & (rows < strategy.region[0])
        in_cols = (cols >= 0) & (cols < strategy.region[1])
        block = in_rows[:, :, None] & in_cols[:, None, :]  # [B, Y, X]
        target[:] = block[:, None, None]
    elif strategy.kind == "identity":
        target[:] = True
        return MaskedField(x, torch.zeros_like(target), target, x[target])
    else:  # pragma: no cover - Literal type checked by the config loader
        raise ValueError(strategy.kind)
    inputs = x.clone()
    inputs[target] = 0.0
    return MaskedField(inputs, target.clone(), target, x[target])

