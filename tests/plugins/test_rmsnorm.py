"""rmsnorm: the norm contract; unit root mean square, no centring."""

import torch

from tel_core.testing import check_norm
from tel_plugins.norms.rmsnorm import RMSNormOptions, rmsnorm


def test_conforms(registry):
    check_norm("rmsnorm", registry=registry)


def test_gives_each_vector_unit_root_mean_square_without_centring():
    x = torch.randn(4, 7, 32) * 3 + 5
    y = rmsnorm(RMSNormOptions(), 32)(x)
    rms = y.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(4, 7), atol=1e-4, rtol=0)
    assert (y.mean(-1) > 0.5).all()  # the mean of x survives: no centring
