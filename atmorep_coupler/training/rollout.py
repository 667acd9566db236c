"""Rollout training: forecast batches whose context is the network's own earlier forecasts.

Trained on the truth's past alone, the network trusts its context. Stepped in a coupled run, that context
is its own output, with errors it never saw in training, and they grow faster than the coarse model's
(docs/verification.md). With ``rollout.max_steps`` = K a forecast batch draws k from 0 .. K and, before the
forecast it is trained on, forecasts the k token time slices that precede that forecast's target: one slice
at a time, without gradient, from windows that end k, k-1, .., 1 slices earlier, each window's
predicted-field slices replaced by the forecasts already made. The trained window's visible context then
holds the network's own forecasts where it has them, as in the k-th step of a coupled run; its target is
the truth. This is the "pushforward trick" (Brandstetter, Worrall and Welling 2022, *Message passing
neural PDE solvers*): the inputs carry the rollout's own errors, one gradient step per batch, no
backpropagation through the rollout.

What is fed back is the ensemble tail's mean, which is what a deterministic coupled run feeds back
(``predict_global`` with no head). Input-only fields (the coarse model's state, forcing) keep their stored
values at every slice: in a coupled run they come from the other components, not from the network. The
earlier windows are read from the sampler at the same places ``k`` slices earlier
(``NeighbourhoodSampler(history_steps=K * t)`` keeps them inside the period), so nothing after a forecast's
target time enters it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from atmorep_coupler.data.sampler import Batch
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.model.masking import MaskedField, forecast_last_slice

__all__ = ["draw_rollout_steps", "roll_out_context"]

#: ``network(masked, meta) -> {field: EnsembleOutput}``, the Multiformer's call signature.
Network = Callable[..., Mapping]


def draw_rollout_steps(seed: int, key: tuple[int, ...], max_steps: int) -> int:
    """The rollout length k of batch ``key``: uniform on 0 .. ``max_steps``, a pure function of (seed, key)
    (its own generator, so the masks of the batch stay what they are without rollout)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key + (3,)))
    return int(rng.integers(0, max_steps + 1))


@torch.no_grad()
def roll_out_context(network: Network, config: ModelConfig, masked: Mapping[str, MaskedField],
                     earlier: Callable[[int], Batch], steps: int, device: torch.device) -> dict[str, MaskedField]:
    """``masked`` (a forecast batch) with the visible context of its predicted fields replaced by the
    network's forecasts of a ``steps``-long rollout before it (module docstring).

    ``earlier(j)``: the batch of the same places ``j`` token time slices earlier. The replacement adds
    (forecast - truth) to the visible inputs, so anything else the masking put there (context noise) stays.
    """
    out = dict(masked)
    if steps == 0:
        return out
    predicted = [f.name for f in config.predicted_fields]
    T = config.predicted_fields[0].num_tokens[0]
    own: dict[int, dict[str, torch.Tensor]] = {}  # slice index in the trained window -> forecast tokens
    truth: dict[int, dict[str, torch.Tensor]] = {}  # the same slices' truth, from the window it was read in
    for j in range(steps, 0, -1):
        window = earlier(j)
        tokens = dict(window.tokens)
        for name in predicted:
            tokens[name] = window.tokens[name].clone()
            for index, forecast in own.items():
                if 0 <= index + j < T:
                    tokens[name][:, :, index + j] = forecast[name]
        inputs = {k: v.to(device) for k, v in forecast_last_slice(config, tokens).items()}
        meta = {k: v.to(device) for k, v in window.meta.items()}
        ensemble = network(inputs, meta)
        target = T - 1 - j  # the slice this window forecasts, counted in the trained window
        own[target] = {}
        truth[target] = {name: window.tokens[name][:, :, T - 1] for name in predicted}
        for name in predicted:
            shape = window.tokens[name][:, :, T - 1].shape  # [B, L, Y, X, t, y, x]; targets in that row-major order
            own[target][name] = ensemble[name].mean.float().reshape(shape).cpu()
    for name in predicted:
        field = out[name]
        inputs = field.inputs.clone()
        for index in range(max(0, T - 1 - steps), T - 1):
            visible = ~field.hidden[:, :, index]
            shift = (own[index][name] - truth[index][name]).to(inputs.dtype)
            inputs[:, :, index] += shift * visible[(...,) + (None,) * (shift.ndim - visible.ndim)]
        out[name] = MaskedField(inputs, field.hidden, field.target, field.targets)
    return out
