"""ScaleNorm (Nguyen & Salazar, 2019): one learned scale times x / ||x||."""

from __future__ import annotations

import math

import attrs
import torch
from tel_core.plugin import hookimpl
from torch import nn


@attrs.frozen
class ScaleNormOptions:
    #: The smallest norm divided by, so that an all-zero vector stays finite.
    eps: float = attrs.field(default=1e-5, validator=attrs.validators.gt(0))


class ScaleNorm(nn.Module):
    """Project each vector onto a sphere whose radius is one learned scalar."""

    def __init__(self, options: ScaleNormOptions, dim: int) -> None:
        super().__init__()
        self.eps = options.eps
        # sqrt(dim): the norm of a vector whose features have unit variance.
        self.scale = nn.Parameter(torch.tensor(math.sqrt(dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=-1, keepdim=True).clamp(min=self.eps)
        return self.scale * x / norm


@hookimpl
def register_norms(register):
    register("scalenorm", ScaleNorm, options=ScaleNormOptions)
