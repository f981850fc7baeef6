"""causal: the attention contract, and the fused kernel equals attention written out."""

import math

import pytest
import torch

from tel_core.model.nn import Positional
from tel_core.testing import check_attention, model_context
from tel_plugins.attention.causal import CausalOptions, CausalSelfAttention


@pytest.mark.parametrize(
    "ctx", [None, model_context(n_heads=1, bias=False), model_context(block_size=1)]
)
def test_conforms(registry, ctx):
    check_attention("causal", registry=registry, ctx=ctx)


@pytest.mark.parametrize(
    "options", [{"n_kv_heads": 2}, {"n_kv_heads": 1, "window": 3}, {"qk_norm": True}]
)
def test_conforms_with_the_options_that_change_its_code_path(registry, options):
    check_attention("causal", options, registry=registry)


class ALiBi(Positional):
    def score_bias(self, seq_len):
        pos = torch.arange(seq_len)
        return -0.5 * (pos.view(-1, 1) - pos.view(1, -1)).clamp(min=0).float()


@pytest.mark.parametrize("positional", [Positional(), ALiBi()], ids=["plain", "score-bias"])
def test_equals_attention_written_out(positional):
    torch.manual_seed(0)
    ctx = model_context()
    attn = CausalSelfAttention(CausalOptions(), ctx).eval()
    x = torch.randn(2, 16, ctx.d_model)
    B, T, C, H = 2, 16, ctx.d_model, ctx.n_heads
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in attn.qkv(x).split(C, dim=2))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
    if (bias := positional.score_bias(T)) is not None:
        scores = scores + bias
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    expected = attn.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(attn(x, positional), expected, atol=1e-5, rtol=1e-5)
