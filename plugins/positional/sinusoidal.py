"""Fixed sinusoidal position encodings (Vaswani et al., 2017), added to the tokens.

The table's entries are of order 1, while token embeddings start at std 0.02: added as
they are, positions drown the tokens for the first hundreds of steps. The paper scales
the token embeddings by sqrt(d_model) before the addition (section 3.4); so does this
plugin unless ``scale_embeddings = false``.
"""

from __future__ import annotations

import math

import attrs
import torch

from tel_core.plugin import ModelContext, Positional, hookimpl


@attrs.frozen
class SinusoidalOptions:
    #: Wavelengths run from 2π to 2π·base across the embedding's dimension pairs.
    base: float = attrs.field(default=10000.0, validator=attrs.validators.gt(0))
    #: Multiply the token embeddings by sqrt(d_model) before adding the table, as the paper.
    scale_embeddings: bool = True


class SinusoidalPositions(Positional):
    """PE[t, 2i] = sin(t / base^(2i/d)), PE[t, 2i+1] = cos(t / base^(2i/d)); no parameters."""

    def __init__(self, options: SinusoidalOptions, ctx: ModelContext) -> None:
        super().__init__()
        d = ctx.d_model
        self.embedding_scale = math.sqrt(d) if options.scale_embeddings else 1.0
        position = torch.arange(ctx.block_size, dtype=torch.float32).unsqueeze(1)
        inv_freq = torch.exp(
            torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(options.base) / d)
        )
        table = torch.zeros(ctx.block_size, d)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: d // 2])
        self.register_buffer("table", table, persistent=False)  # derived, not learned

    def embed(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        table = self.table[offset : offset + x.size(1)]
        return x * self.embedding_scale + table.to(x.dtype)


@hookimpl
def register_positional(register):
    register("sinusoidal", SinusoidalPositions, options=SinusoidalOptions)
