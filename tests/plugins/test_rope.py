"""rope: the positional contract; rotated scores depend only on relative position."""

from __future__ import annotations

import pytest
import torch

from tel_core.testing import ConformanceError, check_positional, model_context
from tel_plugins.positional.rope import RoPE, RoPEOptions, check_rope


@pytest.mark.parametrize("options", [None, {"fraction": 0.5, "theta": 500.0}])
def test_conforms(registry, options):
    check_positional("rope", options, registry=registry)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_scores_depend_on_relative_position_only(fraction):
    rope = RoPE(RoPEOptions(fraction=fraction), model_context(n_layers=1, bias=False))
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


def test_an_odd_number_of_rotated_dimensions_is_refused_by_its_check(registry):
    odd = model_context(d_model=33, n_heads=3)
    with pytest.raises(ValueError, match="rope rotates 11 of 11 head dims"):
        check_rope(RoPEOptions(), odd)
    with pytest.raises(ConformanceError, match=r"rejects the kit's model \(rope rotates 11"):
        check_positional("rope", registry=registry, ctx=odd)
