"""talking_heads keeps tel's attention contract, starts as ordinary attention, and trains."""

import pytest
import torch
from tel_core.plugin import Positional, mark_attention, record_attention
from tel_core.testing import build_component, check_attention, model_context

from tel_extras.talking_heads import TalkingHeadsAttention, TalkingHeadsOptions


@pytest.mark.parametrize("options", [None, {"mix_scores": False}, {"mix_weights": False}])
def test_keeps_the_attention_contract(options):
    # Also checked with every registered positional encoding that acts inside attention.
    check_attention("talking_heads", options)


def test_starts_as_ordinary_multi_head_attention():
    ctx = model_context()
    talking = TalkingHeadsAttention(TalkingHeadsOptions(), ctx).eval()
    plain = build_component("attention", "causal", ctx).eval()
    plain.load_state_dict(talking.state_dict(), strict=False)  # the same qkv and out
    x = torch.randn(2, ctx.block_size, ctx.d_model)
    rope = build_component("positional", "rope", ctx)
    torch.testing.assert_close(talking(x, rope), plain(x, rope), atol=1e-5, rtol=1e-5)


def test_heads_talk_once_the_mixing_leaves_the_identity():
    ctx = model_context()
    talking = TalkingHeadsAttention(TalkingHeadsOptions(), ctx).eval()
    x = torch.randn(2, ctx.block_size, ctx.d_model)
    apart = talking(x, Positional())
    with torch.no_grad():
        talking.mix_scores.fill_(1.0 / ctx.n_heads)  # every head sees the mean score
    assert not torch.allclose(talking(x, Positional()), apart)


def test_a_tiny_model_learns_with_both_components(tel_train):
    run = tel_train(steps=8, attention="talking_heads", norm={"name": "scalenorm"})
    assert run.learned, run.losses


def test_probes_can_record_its_attention_weights():
    ctx = model_context()
    talking = mark_attention(TalkingHeadsAttention(TalkingHeadsOptions(), ctx))
    with torch.no_grad():  # mixes far from the identity, as after training
        talking.mix_weights.copy_(torch.randn(ctx.n_heads, ctx.n_heads))
    with record_attention(talking) as recorded:
        talking(torch.randn(2, ctx.block_size, ctx.d_model), Positional())
    (weights,) = recorded[""]
    assert weights.shape == (2, ctx.n_heads, ctx.block_size, ctx.block_size)
    assert torch.allclose(weights.sum(-1), torch.ones(()))  # distributions, as probes expect
    assert weights.triu(1).abs().max() == 0  # no query sees a later key
