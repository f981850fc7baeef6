"""layernorm: the norm contract; zero mean, unit variance, then gain and bias."""

import pytest
import torch

from tel_core.testing import check_norm
from tel_plugins.norms.layernorm import LayerNormOptions, layernorm


@pytest.mark.parametrize("options", [None, {"bias": False, "eps": 1e-3}])
def test_conforms(registry, options):
    check_norm("layernorm", options, registry=registry)


def test_normalises_each_vector_and_drops_the_bias_on_request():
    x = torch.randn(4, 7, 32) * 3 + 5
    y = layernorm(LayerNormOptions(), 32)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4, 7), atol=1e-3, rtol=0)
    assert layernorm(LayerNormOptions(bias=False), 32).bias is None
