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
        if members.shape[0] == 0:  # no targets: std of nothing would warn
            return cls(members, members.mean(1), members.new_zeros(members.shape[:1] + members.shape[2:]))
        return cls(members, members.mean(1), members.std(1, unbiased=True))


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """``nn.Linear``'s default initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class EnsembleTail(nn.Module):
    def __init__(self, dim: int, token_size: tuple[int, int, int], members: int, hidden_layers: int = 0):
        super().__init__()
        self.token_size = tuple(token_size)
        points = math.prod(token_size)
        self.norm = nn.LayerNorm(dim)
        self.hidden_weight = nn.ParameterList(_uniform(members, dim, dim, fan_in=dim) for _ in range(hidden_layers))
        self.hidden_bias = nn.ParameterList(_uniform(members, dim, fan_in=dim) for _ in range(hidden_layers))
        self.weight = _uniform(members, dim, points, fan_in=dim)
        self.bias = _uniform(members, points, fan_in=dim)

    def forward(self, x: torch.Tensor) -> EnsembleOutput:
        """``x [N, E]`` decoder output of the target tokens -> ensemble of ``[N, M, t, y, x]``."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = self.norm(x.float())
            h = h.unsqueeze(1).expand(-1, self.weight.shape[0], -1)  # [N, M, E]
            for weight, bias in zip(self.hidden_weight, self.hidden_bias):
                h = F.gelu(torch.einsum("nme,mef->nmf", h, weight) + bias)
            out = torch.einsum("nme,mep->nmp", h, self.weight) + self.bias
        return EnsembleOutput.from_members(out.reshape(*out.shape[:2], *self.token_size))
