"""Token embeddings: how a token's points become one vector of the field's width.

``linear`` (AtmoRep's): one ``Linear(t*y*x, E)``. ``transformer`` (``FieldConfig.embedding``): each point
is a sequence element, ``value * w + b + position[p]`` of width ``embedding_width`` (a learned position
per point), ``embedding_layers`` pre-norm transformer layers over the points, then ``Linear(P * width,
E)`` of the flattened result. With zero layers it is an affine map of the points, the linear embedding
reparametrised (:func:`equivalent_linear` gives that map), so the transformer adds exactly what its
layers learn. Fine tokens (``grid_refinement`` > 1) have 4x or more points; attention among them learns
their spatial structure with fewer parameters than a wider linear map would need per pattern.
"""

from __future__ import annotations

import torch

from torch import nn

from atmorep_coupler.model.config import FieldConfig

__all__ = ["PointTransformerEmbedding", "equivalent_linear", "token_embedding"]

#: Heads of the point transformer (``embedding_width`` is a multiple of 4).
POINT_HEADS = 4


class PointTransformerEmbedding(nn.Module):
    """``[..., P]`` token points -> ``[..., E]`` through a small transformer over the points (module docs)."""

    def __init__(self, points: int, dim: int, width: int, layers: int):
        super().__init__()
        self.points, self.width = points, width
        self.value = nn.Linear(1, width)
        self.position = nn.Parameter(0.02 * torch.randn(points, width))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, POINT_HEADS, 2 * width, dropout=0.0, batch_first=True,
                                       norm_first=True)
            for _ in range(layers)
        )
        self.out = nn.Linear(points * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = self.value(x.reshape(-1, self.points, 1)) + self.position  # [N, P, width]
        for layer in self.layers:
            h = layer(h)
        return self.out(h.flatten(1)).reshape(*lead, -1)


def equivalent_linear(embedding: PointTransformerEmbedding) -> nn.Linear:
    """The ``Linear(P, E)`` a layer-free :class:`PointTransformerEmbedding` equals:
    ``out(value(x_p) + pos_p) = Σ_p W_p (w x_p + b + pos_p) + c``, so weight ``[E, P] = W_p · w`` and bias
    ``c + Σ_p W_p (b + pos_p)``."""
    if len(embedding.layers):
        raise ValueError("only an embedding without transformer layers is affine in the points")
    W = embedding.out.weight.detach().reshape(-1, embedding.points, embedding.width)  # [E, P, width]
    linear = nn.Linear(embedding.points, W.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.einsum("epw,w->ep", W, embedding.value.weight.detach()[:, 0]))
        shift = embedding.value.bias.detach() + embedding.position.detach()  # [P, width]
        linear.bias.copy_(embedding.out.bias.detach() + torch.einsum("epw,pw->e", W, shift))
    return linear


def token_embedding(field: FieldConfig) -> nn.Module:
    """The configured map of a token's ``t*y*x`` points to the field's ``embed_dim``."""
    if field.embedding == "transformer":
        return PointTransformerEmbedding(field.token_points, field.embed_dim, field.embedding_width,
                                         field.embedding_layers)
    return nn.Linear(field.token_points, field.embed_dim)
