"""rope: the positional contract; rotated scores depend only on relative position."""

import pytest
import torch

from tel_core.errors import ConfigError
from tel_core.testing import check_positional, model_context
from tel_plugins.positional.rope import RoPE, RoPEOptions


@pytest.mark.parametrize("options", [None, {"fraction": 0.5, "theta": 500.0}])
def test_conforms(registry, options):
    check_positional("rope", options, registry=registry)


def test_scores_depend_only_on_the_distance_between_positions():
    ctx = model_context()
    rope = RoPE(RoPEOptions(), ctx)
    q, k = torch.randn(2, 1, 1, 1, ctx.head_dim)
    T = ctx.block_size

    def score(m: int, n: int) -> float:
        qs, ks = torch.zeros(1, 1, T, ctx.head_dim), torch.zeros(1, 1, T, ctx.head_dim)
        qs[..., m, :], ks[..., n, :] = q, k
        rq, rk = rope.rotate(qs, ks)
        return (rq[..., m, :] * rk[..., n, :]).sum().item()

    assert score(5, 2) == pytest.approx(score(12, 9), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_a_fraction_leaves_the_other_dimensions_alone():
    ctx = model_context()
    rope = RoPE(RoPEOptions(fraction=0.5), ctx)
    q = torch.randn(1, ctx.n_heads, ctx.block_size, ctx.head_dim)
    rotated, _ = rope.rotate(q, q)
    half = ctx.head_dim // 2
    assert torch.equal(rotated[..., half:], q[..., half:])
    assert not torch.allclose(rotated[..., :half], q[..., :half])


def test_an_odd_number_of_rotated_dimensions_is_a_config_error():
    with pytest.raises(ConfigError, match="rope rotates 11 of 11 head dims"):
        RoPE(RoPEOptions(), model_context(d_model=33, n_heads=3))
