"""Positional encodings: ALiBi's slopes and bias, NoPE's nothing, RoPE's relative scores."""

from __future__ import annotations

import pytest
import torch

from tel_core.interfaces import ModelContext
from tel_core.nn import Positional
from tel_plugins.positional.alibi import ALiBi, ALiBiOptions, alibi_slopes
from tel_plugins.positional.nope import NoPE, NoPEOptions
from tel_plugins.positional.rope import RoPE, RoPEOptions


def ctx(n_heads=4, d_model=32, block_size=16) -> ModelContext:
    return ModelContext(
        d_model=d_model,
        n_heads=n_heads,
        n_layers=1,
        block_size=block_size,
        dropout=0.0,
        bias=False,
        make_norm=lambda dim: torch.nn.LayerNorm(dim),
    )


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # not a power of two: the 4-head slopes, then every other 8-head slope
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


def test_alibi_biases_scores_by_distance_only():
    alibi = ALiBi(ALiBiOptions(), ctx(n_heads=2))
    bias = alibi.score_bias(5)
    assert bias.shape == (2, 5, 5)
    slopes = alibi_slopes(2)
    for h in range(2):
        for i in range(5):
            for j in range(i + 1):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * (i - j))
    assert alibi.embed(torch.ones(1, 5, 32)).equal(torch.ones(1, 5, 32))
    assert not list(alibi.parameters())


def test_nope_changes_nothing():
    nope = NoPE(NoPEOptions(), ctx())
    x, q, k = torch.randn(2, 5, 32), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    assert nope.embed(x) is x
    assert nope.rotate(q, k) == (q, k)
    assert nope.score_bias(5) is None
    assert isinstance(nope, Positional) and not list(nope.parameters())


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_rope_scores_depend_on_relative_position_only(fraction):
    rope = RoPE(RoPEOptions(fraction=fraction), ctx())
    g = torch.Generator().manual_seed(0)
    q0, k0 = torch.randn(8, generator=g), torch.randn(8, generator=g)
    T = 16
    q = q0.expand(1, 1, T, 8).clone()  # the same vector at every position
    k = k0.expand(1, 1, T, 8).clone()
    rq, rk = rope.rotate(q, k)
    scores = (rq @ rk.transpose(-2, -1))[0, 0]  # (T, T)
    for offset in (0, 1, 5):
        diagonal = scores.diagonal(-offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal))
    if fraction < 1.0:  # the unrotated half passes through untouched
        assert rq[..., 4:].equal(q[..., 4:])
