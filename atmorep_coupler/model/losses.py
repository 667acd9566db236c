"""Training losses on the ensemble predictions of the target tokens.

Element-wise scores (``gaussian_crps``, ``ensemble_crps``) are shared with ``metrics``; ``LOSSES``
maps config names to batch losses ``(EnsembleOutput, targets) -> scalar``. Corrections to the
reference code (github.com/clessig/atmorep):

- ``gaussian_crps`` is the closed form of Gneiting et al. (2005), eq. 5:
  ``σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π]``, ``z = (y − μ)/σ``. The reference's ``crps`` used an
  unnormalized Gaussian and ``√(2π)Φ``: for y = (0.3, −1, 2), μ = 0, σ = 0.7 it gives
  (1.584, 0.726, 7.634) instead of (0.214, 0.653, 1.606).
- ``ensemble_crps`` is the kernel form ``mean_m |x_m − y| − Σ_{m,m'} |x_m − x_m'| / (2 M (M − 1))``
  (the *fair* estimator, Ferro 2014; ``fair=False`` divides by ``2 M²``), differentiable in both terms.
  The reference built the spread term with ``torch.tensor([...])``, cutting its gradient, so
  "kernel_crps" trained as plain MAE. The pair sum uses sorted members,
  ``Σ_{m,m'} |x_m − x_m'| = 2 Σ_i (2i − M − 1) x_(i)``: O(M log M) time and O(M) memory per point.
- ``stats`` is AtmoRep's statistical loss ``mean((G − 1)²) + mean(√σ)`` with the unnormalized
  Gaussian ``G = exp(−(y − μ)²/(2σ²))``: G → 1 asks σ to cover the error, √σ penalises spread.
  A tiny ε keeps ``σ = 0, y = μ`` finite.

The total loss is a weighted mean: ``Σ_l Σ_f a_l w_f L_{l,f} / Σ_l Σ_f a_l w_f`` over losses l
(weights ``a_l``) and predicted fields f (``loss_weight`` ``w_f``) that have targets in the batch.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping

import torch

from atmorep_coupler.model.tail import EnsembleOutput

__all__ = ["LOSSES", "gaussian_crps", "ensemble_crps", "stats_loss", "total_loss"]

_EPS = 1e-6


def gaussian_crps(mu: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise CRPS of ``N(mu, sigma²)`` for observation ``y`` (Gneiting et al. 2005, eq. 5)."""
    sigma = sigma.clamp_min(_EPS)
    z = (y - mu) / sigma
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def ensemble_crps(members: torch.Tensor, y: torch.Tensor, *, fair: bool = True) -> torch.Tensor:
    """Element-wise kernel CRPS of ``members [N, M, ...]`` for ``y [N, ...]`` (fair by default)."""
    M = members.shape[1]
    skill = (members - y.unsqueeze(1)).abs().mean(1)
    ranked = members.sort(dim=1).values
    rank_weight = 2 * torch.arange(1, M + 1, device=members.device, dtype=members.dtype) - M - 1
    pair_sum = 2 * torch.einsum("nm...,m->n...", ranked, rank_weight)  # Σ_{m,m'} |x_m - x_m'|
    return skill - pair_sum / (2 * M * (M - 1) if fair else 2 * M * M)


def stats_loss(out: EnsembleOutput, y: torch.Tensor) -> torch.Tensor:
    """AtmoRep's statistical loss (module docstring)."""
    gauss = torch.exp(-((y - out.mean) ** 2) / (2 * out.std**2 + _EPS))
    return ((gauss - 1) ** 2).mean() + torch.sqrt(out.std.abs() + _EPS).mean()


LOSSES: dict[str, Callable[[EnsembleOutput, torch.Tensor], torch.Tensor]] = {
    "mse": lambda out, y: ((out.mean - y) ** 2).mean(),
    "mse_ensemble": lambda out, y: ((out.members - y.unsqueeze(1)) ** 2).mean(),
    "stats": stats_loss,
    "crps_gaussian": lambda out, y: gaussian_crps(out.mean, out.std, y).mean(),
    "crps_ensemble": lambda out, y: ensemble_crps(out.members, y).mean(),
}


def total_loss(outputs: Mapping[str, EnsembleOutput], targets: Mapping[str, torch.Tensor],
               loss_weights: Mapping[str, float], field_weights: Mapping[str, float]
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted mean of the configured losses over the predicted fields (module docstring).

    Returns the total and the parts ``"<loss>/<field>"`` (detached) for logging. Fields without
    targets in this batch are left out of numerator and denominator alike.
    """
    total, norm, parts = None, 0.0, {}
    for field, out in outputs.items():
        y = targets[field]
        if y.shape[0] == 0:
            continue
        for name, a in loss_weights.items():
            value = LOSSES[name](out, y.to(out.members.dtype))
            parts[f"{name}/{field}"] = value.detach()
            term = a * field_weights[field] * value
            total = term if total is None else total + term
            norm += a * field_weights[field]
    if total is None:
        raise ValueError("no predicted field has target tokens in this batch")
    return total / norm, parts
