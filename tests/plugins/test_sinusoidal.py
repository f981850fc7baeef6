"""sinusoidal: the positional contract; the fixed table of Vaswani et al."""

import math

import pytest
import torch

from tel_core.testing import check_positional, model_context
from tel_plugins.positional.sinusoidal import SinusoidalOptions, SinusoidalPositions


@pytest.mark.parametrize("ctx", [None, model_context(d_model=33, n_heads=3)])
def test_conforms(registry, ctx):
    check_positional("sinusoidal", registry=registry, ctx=ctx)


def test_the_table_follows_the_formula_and_learns_nothing():
    ctx = model_context()
    pe = SinusoidalPositions(SinusoidalOptions(base=100.0), ctx)
    assert list(pe.parameters()) == []
    table = pe.embed(torch.zeros(1, ctx.block_size, ctx.d_model))[0]
    t, i, d = 7, 3, ctx.d_model
    assert table[t, 2 * i].item() == pytest.approx(math.sin(t / 100.0 ** (2 * i / d)), abs=1e-6)
    assert table[t, 2 * i + 1].item() == pytest.approx(math.cos(t / 100.0 ** (2 * i / d)), abs=1e-6)


def test_token_embeddings_are_scaled_by_sqrt_d_model_unless_disabled():
    ctx = model_context()
    x = torch.randn(2, 5, ctx.d_model)
    table = SinusoidalPositions(SinusoidalOptions(), ctx).table[:5]
    scaled = SinusoidalPositions(SinusoidalOptions(), ctx).embed(x)
    plain = SinusoidalPositions(SinusoidalOptions(scale_embeddings=False), ctx).embed(x)
    assert torch.allclose(scaled, x * math.sqrt(ctx.d_model) + table)
    assert torch.allclose(plain, x + table)
