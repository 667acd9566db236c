"""Ensemble tail: M independent heads on the decoder output of the target tokens.

Each member is ``LayerNorm -> [Linear(E, E), GELU] x hidden_layers -> Linear(E, t*y*x)``; the member
weights are stacked into ``[M, ...]`` tensors so that all members run as one batched ``einsum``
instead of M small layers (mathematically the reference's 16 separate heads). The tail runs in fp32
even under autocast: the ensemble spread is a small difference of large numbers and bf16 would
quantise it away.

As in the reference, at inference all spread comes from the members sharing one representation;
it is calibrated by the statistical / CRPS losses, not by dropout.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch import nn

__all__ = ["EnsembleOutput", "EnsembleTail"]


@dataclass
class EnsembleOutput:
    """Predictions for ``N`` target tokens: members ``[N, M, t, y, x]``, their mean and unbiased std."""

    members: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_members(cls, members: torch.Tensor) -> EnsembleOutput:
        """Mean and unbiased std over the members, written out so that no target count needs a branch
        (``Tensor.std`` warns on zero targets; a branch on the count would split a compiled graph)."""
        mean = members.mean(1)
        std = ((members - mean.unsqueeze(1)).square().sum(1) / (members.shape[1] - 1)).sqrt()
        return cls(members, mean, std)


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """``nn.Linear``'s default initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


def _member_weights(members: int, fan_in: int, fan_out: int) -> nn.Parameter:
    """``members`` matrices in ``nn.Linear``'s ``[out, in]`` layout, ``[M, fan_out, fan_in]``, drawn in
    ``[M, fan_in, fan_out]`` order (as earlier versions stored them, so a seed gives the same weights)."""
    return nn.Parameter(_uniform(members, fan_in, fan_out, fan_in=fan_in).detach().transpose(1, 2).contiguous())


class EnsembleTail(nn.Module):
    """``M`` heads ``LayerNorm -> [Linear, GELU] x hidden_layers -> Linear`` on the target tokens.

    Weights are ``[M, out, in]`` (``nn.Linear``'s layout per member), so the members' first layer is one
    matrix product of the shared normalized tokens with all members' weights at once, without a copy.
    """

    def __init__(self, dim: int, token_size: tuple[int, int, int], members: int, hidden_layers: int = 0):
        super().__init__()
        self.token_size = tuple(token_size)
        points = math.prod(token_size)
        self.norm = nn.LayerNorm(dim)
        self.hidden_weight = nn.ParameterList(_member_weights(members, dim, dim) for _ in range(hidden_layers))
        self.hidden_bias = nn.ParameterList(_uniform(members, dim, fan_in=dim) for _ in range(hidden_layers))
        self.weight = _member_weights(members, dim, points)
        self.bias = _uniform(members, points, fan_in=dim)

    def forward(self, x: torch.Tensor) -> EnsembleOutput:
        """``x [N, E]`` decoder output of the target tokens -> ensemble of ``[N, M, t, y, x]``."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = self.norm(x.float())  # [N, E], shared by the members until their first layer
            for weight, bias in zip(self.hidden_weight, self.hidden_bias):
                h = F.gelu(_per_member(h, weight) + bias)
            out = _per_member(h, self.weight) + self.bias
        return EnsembleOutput.from_members(out.reshape(*out.shape[:2], *self.token_size))


def _per_member(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``h [N, in]`` (shared by the members) or ``[N, M, in]`` times ``weight [M, out, in]`` -> ``[N, M, out]``."""
    if h.dim() == 2:
        return F.linear(h, weight.flatten(0, 1)).unflatten(1, weight.shape[:2])
    return torch.einsum("nmi,moi->nmo", h, weight)
