"""The transformer's position-wise MLP: expand, activate, project back."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from tel_core.plugin import ModelContext, hookimpl, mark_residual_projection

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@attrs.frozen
class MLPOptions:
    #: Width of the hidden layer, in multiples of d_model.
    expansion: int = attrs.field(default=4, validator=attrs.validators.gt(0))
    #: The nonlinearity between the two projections.
    activation: Literal["gelu", "relu", "silu"] = "gelu"


class MLP(nn.Module):
    """d_model -> expansion * d_model -> activation -> d_model."""

    def __init__(self, options: MLPOptions, ctx: ModelContext) -> None:
        super().__init__()
        hidden = options.expansion * ctx.d_model
        self.up = nn.Linear(ctx.d_model, hidden, bias=ctx.bias)
        self.act = ACTIVATIONS[options.activation]()
        self.down = mark_residual_projection(nn.Linear(hidden, ctx.d_model, bias=ctx.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


@hookimpl
def register_ffn(register):
    register("mlp", MLP, options=MLPOptions)
