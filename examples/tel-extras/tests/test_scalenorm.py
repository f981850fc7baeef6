"""scalenorm keeps tel's norm contract, and puts every vector on one sphere."""

import math

import pytest
import torch
from tel_core.testing import check_norm

from tel_extras.scalenorm import ScaleNorm, ScaleNormOptions


@pytest.mark.parametrize("options", [None, {"eps": 1e-3}])
def test_keeps_the_norm_contract(options):
    check_norm("scalenorm", options)


def test_every_vector_gets_the_norm_of_the_learned_scale():
    norm = ScaleNorm(ScaleNormOptions(), dim=64)
    y = norm(torch.randn(3, 5, 64) * 10)
    torch.testing.assert_close(y.norm(dim=-1), torch.full((3, 5), math.sqrt(64)))
