"""Fixed sinusoidal position encodings (Vaswani et al., 2017), added to the tokens."""

from __future__ import annotations

import math

import attrs
import torch

from tel_core import hookimpl
from tel_core.interfaces import ModelContext
from tel_core.nn import Positional


@attrs.frozen
class SinusoidalOptions:
    #: Wavelengths run from 2π to 2π·base across the embedding's dimension pairs.
    base: float = attrs.field(default=10000.0, validator=attrs.validators.gt(0))


class SinusoidalPositions(Positional):
    """PE[t, 2i] = sin(t / base^(2i/d)), PE[t, 2i+1] = cos(t / base^(2i/d)); no parameters."""

    def __init__(self, options: SinusoidalOptions, ctx: ModelContext) -> None:
        super().__init__()
        d = ctx.d_model
        position = torch.arange(ctx.block_size, dtype=torch.float32).unsqueeze(1)
        inv_freq = torch.exp(
            torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(options.base) / d)
        )
        table = torch.zeros(ctx.block_size, d)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: d // 2])
        self.register_buffer("table", table, persistent=False)  # derived, not learned

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.size(1)].to(x.dtype)


@hookimpl
def register_positional(register):
    register("sinusoidal", SinusoidalPositions, options=SinusoidalOptions)
