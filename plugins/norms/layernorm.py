"""Layer normalisation (Ba et al., 2016), with or without a bias."""

from __future__ import annotations

import attrs
from torch import nn

from tel_core.plugin import hookimpl


@attrs.frozen
class LayerNormOptions:
    #: Learn a shift (bias) after the gain.
    bias: bool = True
    #: Added to the variance before the square root, so a constant input stays finite.
    eps: float = attrs.field(default=1e-5, validator=attrs.validators.gt(0))


def layernorm(options: LayerNormOptions, dim: int) -> nn.Module:
    """Subtract the mean, divide by the standard deviation, then a learned gain (and bias)."""
    return nn.LayerNorm(dim, eps=options.eps, bias=options.bias)


@hookimpl
def register_norms(register):
    register("layernorm", layernorm, options=LayerNormOptions)
