"""Root-mean-square normalisation (Zhang & Sennrich, 2019): no centring, no bias."""

from __future__ import annotations

import attrs
from torch import nn

from tel_core.plugin import hookimpl


@attrs.frozen
class RMSNormOptions:
    #: Added to the mean square before the square root, so a zero input stays finite.
    eps: float = attrs.field(default=1e-6, validator=attrs.validators.gt(0))


def rmsnorm(options: RMSNormOptions, dim: int) -> nn.Module:
    """Divide by the root mean square of the features, then a learned gain."""
    return nn.RMSNorm(dim, eps=options.eps)


@hookimpl
def register_norms(register):
    register("rmsnorm", rmsnorm, options=RMSNormOptions)
