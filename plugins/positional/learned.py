"""Learned absolute position embeddings (GPT-2), added to the token embeddings."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from tel_core.plugin import ModelContext, Positional, hookimpl


@attrs.frozen
class LearnedOptions:
    pass


class LearnedPositions(Positional):
    """A trained embedding per position up to block_size, added to the tokens."""

    def __init__(self, options: LearnedOptions, ctx: ModelContext) -> None:
        super().__init__()
        self.table = nn.Embedding(ctx.block_size, ctx.d_model)

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        positions = torch.arange(offset, offset + x.size(1), device=x.device)
        return x + self.table(positions)  # (B, T, C) + (T, C)


@hookimpl
def register_positional(register):
    register("learned", LearnedPositions, options=LearnedOptions)
