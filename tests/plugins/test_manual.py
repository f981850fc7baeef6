"""manual: the attention contract; the hand-written backward pass against autograd."""

from __future__ import annotations

import pytest
import torch

from tel_core.testing import check_attention
from tel_plugins.attention.manual import SoftmaxAttention
from tel_plugins.attention.multihead import allowed


@pytest.mark.parametrize(
    "options", [None, {"n_kv_heads": 2}, {"n_kv_heads": 1, "window": 3}, {"qk_norm": True}]
)
def test_conforms(registry, options):
    check_attention("manual", options, registry=registry)


def _inputs(B=2, nh=3, T=6, hs=4, bias_shape=(3, 6, 6)):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, nh, T, hs, generator=g, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(*bias_shape, generator=g, dtype=torch.float64)
    return [t.requires_grad_() for t in (q, k, v, bias)]


@pytest.mark.parametrize("window", [None, 2])
def test_manual_backward_passes_gradcheck(window):
    q, k, v, bias = _inputs()
    keep = allowed(q.size(2), window, q.device)

    def y(q, k, v, bias):
        return SoftmaxAttention.apply(q, k, v, bias, keep, None)[0]

    assert torch.autograd.gradcheck(y, (q, k, v, bias))
    assert torch.autograd.gradcheck(lambda q, k, v: y(q, k, v, None), (q, k, v))


def test_manual_backward_with_dropout_and_a_broadcast_bias_passes_gradcheck():
    q, k, v, bias = _inputs(bias_shape=(1, 6, 6))
    keep = allowed(6, None, q.device)
    g = torch.Generator().manual_seed(1)
    dropout_mask = (torch.rand(2, 3, 6, 6, generator=g) > 0.3).double() / 0.7

    def y(q, k, v, bias):
        return SoftmaxAttention.apply(q, k, v, bias, keep, dropout_mask)[0]

    assert torch.autograd.gradcheck(y, (q, k, v, bias))


def test_manual_gradients_equal_autograds_of_the_same_maths():
    q, k, v, bias = _inputs()
    keep = allowed(6, None, q.device)
    manual, probabilities = SoftmaxAttention.apply(q, k, v, bias, keep, None)
    scores = (q @ k.transpose(-2, -1)) / 2.0 + bias  # hs = 4: scale 1/2
    reference_p = scores.masked_fill(~keep, float("-inf")).softmax(-1)
    reference = reference_p @ v
    torch.testing.assert_close(manual, reference)
    torch.testing.assert_close(probabilities, reference_p)
    dy = torch.randn_like(manual)
    ours = torch.autograd.grad(manual, (q, k, v, bias), dy)
    theirs = torch.autograd.grad(reference, (q, k, v, bias), dy)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
