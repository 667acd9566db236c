"""Area-weighted verification scores of sampled neighbourhoods per field and level, accumulated over batches.

Every grid point of a target token carries the weight the sampler gives its row
(``Batch.row_weight``: band area / probability that a window covers the row). The sampler draws
window centres by area already, so weighting points by ``cos(latitude)`` again would count the
sphere twice (effectively ``cos²``); with these weights every row counts in proportion to its area,
once, over the sampling distribution, and scores are area means:

- RMSE of the ensemble mean ``sqrt(Σ w (μ − y)² / Σ w)`` (pooled over all points, then the root);
- CRPS: the fair kernel CRPS of the members (``losses.ensemble_crps``), area-weighted mean;
- spread ``sqrt(Σ w σ² / Σ w)`` and the spread/skill ratio ``sqrt((M + 1)/M) · spread / RMSE``,
  which is 1 for a calibrated M-member ensemble (Fortin et al. 2014, eq. 15).

The accumulator keeps additive sums (:meth:`ScoreAccumulator.sums`), so distributed runs add them
across ranks before :func:`scores` turns them into scores.
"""

from __future__ import annotations

import math

from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch

from atmorep_coupler.model.config import FieldConfig
from atmorep_coupler.model.losses import ensemble_crps

__all__ = ["ScoreAccumulator", "scores", "target_rows", "level_labels"]

_STATS = ("weight", "se", "crps", "var")


def level_labels(field: FieldConfig) -> list[str]:
    """``['500hPa', ...]`` for pressure levels, ``['surface']`` for surface fields and series."""
    return [f"{p:g}hPa" for p in field.levels] or ["surface"]


def target_rows(per_row: torch.Tensor, target_index: torch.Tensor, token_size: Sequence[int]) -> torch.Tensor:
    """A per-row quantity ``[N, y]`` (e.g. ``Batch.row_weight``) at the rows of each target token, from
    ``per_row [B, Y*y]`` and the ``[N, 5]`` (sample, level, time, row, column) token indices."""
    B, ny = per_row.shape
    y = token_size[1]
    return per_row.reshape(B, ny // y, y)[target_index[:, 0], target_index[:, 3]]


class ScoreAccumulator:
    """Adds up area-weighted error statistics per field and level over batches."""

    def __init__(self, levels: Mapping[str, Sequence[str]], ensemble_size: int | None = None):
        self.levels = {name: list(labels) for name, labels in levels.items()}
        self.ensemble_size = ensemble_size
        self._sums = {
            name: {stat: torch.zeros(len(labels), dtype=torch.float64) for stat in _STATS}
            for name, labels in self.levels.items()
        }

    def update(self, field: str, prediction: torch.Tensor, target: torch.Tensor, level: torch.Tensor,
               weight: torch.Tensor, members: torch.Tensor | None = None) -> None:
        """``prediction``/``target [N, t, y, x]``, ``level [N]`` level index, ``weight [N, y]`` the weight
        of the points of each row (:func:`target_rows` of ``Batch.row_weight``); ``members [N, M, t, y, x]``
        adds CRPS and spread."""
        if target.shape[0] == 0:
            return
        w = weight.double()[:, None, :, None].expand(target.shape)
        per_token = lambda v: (v.double() * w).flatten(1).sum(1)  # noqa: E731
        level = level.to(torch.long).cpu()
        sums = self._sums[field]
        add = lambda stat, v: sums[stat].index_add_(0, level, v.detach().cpu())  # noqa: E731
        add("weight", w.flatten(1).sum(1))
        add("se", per_token((prediction - target) ** 2))
        if members is not None:
            add("crps", per_token(ensemble_crps(members.float(), target.float())))
            add("var", per_token(members.float().var(1, unbiased=True)))

    def sums(self) -> dict[str, float]:
        """Additive statistics ``{"<field>/<stat>/<level>": value}`` (sum these across ranks)."""
        return {
            f"{name}/{stat}/{label}": float(values[i])
            for name, stats in self._sums.items()
            for stat, values in stats.items()
            for i, label in enumerate(self.levels[name])
        }

    def scores(self) -> dict[str, float]:
        return scores(self.sums(), self.ensemble_size)


def scores(sums: Mapping[str, float], ensemble_size: int | None = None) -> dict[str, float]:
    """Scores from (possibly rank-summed) :meth:`ScoreAccumulator.sums`: per level
    ``"<field>/rmse/<level>"`` etc. and per field over all levels ``"<field>/rmse"``."""
    grouped: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key, value in sums.items():
        name, stat, label = key.split("/")
        grouped[(name, f"/{label}")][stat] += value  # this level
        grouped[(name, "")][stat] += value  # all levels of the field
    out = {}
    for (name, suffix), s in grouped.items():
        if s["weight"] <= 0:
            continue
        rmse = math.sqrt(s["se"] / s["weight"])
        out[f"{name}/rmse{suffix}"] = rmse
        if s["var"] > 0:
            spread = math.sqrt(s["var"] / s["weight"])
            out[f"{name}/crps{suffix}"] = s["crps"] / s["weight"]
            out[f"{name}/spread{suffix}"] = spread
            if ensemble_size and rmse > 0:
                out[f"{name}/spread_skill{suffix}"] = math.sqrt((ensemble_size + 1) / ensemble_size) * spread / rmse
    return dict(sorted(out.items()))
