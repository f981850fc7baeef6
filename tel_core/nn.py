"""Torch building blocks shared by the model skeleton and model plugins."""

from __future__ import annotations

import torch
from torch import nn

_RESIDUAL = "_tel_residual_projection"


class Positional(nn.Module):
    """Base class of positional encodings: override any of the three parts.

    - ``embed``: add position information to the token embeddings (learned, sinusoidal);
    - ``rotate``: transform queries and keys inside attention (RoPE);
    - ``score_bias``: a bias added to the attention scores (ALiBi).

    Attention variants call ``rotate`` and ``score_bias`` on whatever encoding the
    experiment chose, so any attention combines with any positional encoding.
    """

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: token embeddings (B, T, C) -> (B, T, C)."""
        return x

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (B, n_heads, T, head_dim) -> the same shapes."""
        return q, k

    def score_bias(self, seq_len: int) -> torch.Tensor | None:
        """None, or a bias broadcastable to the scores (B, n_heads, T, T)."""
        return None


def mark_residual_projection(layer: nn.Linear) -> nn.Linear:
    """Mark the linear layer that writes a block's output into the residual stream.

    The model initialises its weights with std 0.02 / sqrt(2 * n_layers) (GPT-2), so that
    the residual stream's variance does not grow with depth.
    """
    setattr(layer, _RESIDUAL, True)
    return layer


def is_residual_projection(module: nn.Module) -> bool:
    return getattr(module, _RESIDUAL, False)
