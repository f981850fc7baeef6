"""SwiGLU (Shazeer, 2020): a gated feed-forward block, as in LLaMA and PaLM.

    ffn(x) = W_down (silu(W_gate x) ⊙ W_up x)

Three matrices instead of two, so at the same parameter count the hidden layer is 2/3
as wide: 8/3 * d_model matches a GELU MLP of expansion 4 (3 * d * 8d/3 = 2 * d * 4d).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from tel_core.plugin import ModelContext, hookimpl, mark_residual_projection

_optional_positive = attrs.validators.optional(attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class SwiGLUOptions:
    #: The hidden width, used as given. Default: 8/3 * d_model, rounded up to multiple_of.
    hidden: int | None = attrs.field(default=None, validator=_optional_positive)
    #: Round the default hidden width up to a multiple of this (hardware-friendly sizes).
    multiple_of: int = attrs.field(default=64, validator=attrs.validators.ge(1))


def hidden_size(options: SwiGLUOptions, d_model: int) -> int:
    if options.hidden is not None:
        return options.hidden
    m = options.multiple_of
    return -(-8 * d_model // (3 * m)) * m  # ceil(8 d / 3 / m) * m, in integers


class SwiGLU(nn.Module):
    """d_model -> (silu(gate) * up, each hidden wide) -> d_model."""

    def __init__(self, options: SwiGLUOptions, ctx: ModelContext) -> None:
        super().__init__()
        hidden = hidden_size(options, ctx.d_model)
        self.gate = nn.Linear(ctx.d_model, hidden, bias=ctx.bias)
        self.up = nn.Linear(ctx.d_model, hidden, bias=ctx.bias)
        self.down = mark_residual_projection(nn.Linear(hidden, ctx.d_model, bias=ctx.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (B, T, hidden) -> (B, T, C)


@hookimpl
def register_ffn(register):
    register("swiglu", SwiGLU, options=SwiGLUOptions)
