"""The KV cache: cached generation equals recomputation, for every built-in combination."""

from __future__ import annotations

import attrs
import pytest
import torch
from scipy import stats

from tel_core import hookimpl
from tel_core.config_loader import experiment_from_dict
from tel_core.errors import TelError
from tel_core.generate import Sampling, TextStream, generate, kept_context, next_token
from tel_core.kv_cache import implements_cache
from tel_core.model import build_model
from tel_core.nn import Positional

from .conftest import builtin_components
from .trained import one_thread  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("one_thread")

BLOCK = 16
VOCAB = 40
ATTENTIONS = [name for _, name in builtin_components(("attention",))]
POSITIONALS = [name for _, name in builtin_components(("positional",))]


def make_model(registry, attention, positional="rope", vocab=VOCAB):
    """A small model with weights far enough from their initialisation to have opinions."""
    data = {
        "name": "x",
        "data": {"block_size": BLOCK},
        "model": {
            "d_model": 32,
            "n_layers": 2,
            "n_heads": 4,
            "attention": attention,
            "positional": positional,
        },
        "loggers": [],
    }
    exp = experiment_from_dict(data, registry)
    torch.manual_seed(0)
    model = build_model(exp.model, vocab, BLOCK, registry).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def cached_logits(model, idx, pieces):
    """Feed ``idx`` through the cache in pieces of the given lengths."""
    cache, out, start = model.new_cache(), [], 0
    for n in pieces:
        out.append(model.forward_cached(idx[:, start : start + n], cache))
        start += n
    return torch.cat(out, dim=1)


ATTENTION_OPTIONS = [
    {},
    {"n_kv_heads": 2},  # GQA
    {"n_kv_heads": 1},  # MQA
    {"window": 5},
]


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_greedy_decoding_with_and_without_the_cache_gives_the_same_tokens(
    registry, attention, positional
):
    for options in ATTENTION_OPTIONS:
        if attention == "linear" and "window" in options:
            continue  # linear attention has no window
        model = make_model(registry, {"name": attention, **options}, positional)
        assert implements_cache(model.blocks[0].attn)
        prompt = torch.randint(VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
        try:
            model(prompt)
        except TelError:  # linear attention refuses ALiBi's score bias, in one line
            assert attention == "linear" and positional == "alibi"
            return
        # 28 new tokens: the context slides past the block size four times.
        with_cache = generate(model, prompt, 28, temperature=0, cache=True)
        without = generate(model, prompt, 28, temperature=0, cache=False)
        assert torch.equal(with_cache, without), (attention, positional, options)
        # And the cache's logits are the whole forward's, prefill and steps alike.
        idx = with_cache[:, :BLOCK]
        got = cached_logits(model, idx, [5, 1, 4, *[1] * 6])
        torch.testing.assert_close(got, model(idx), atol=1e-5, rtol=1e-5)  # float32 rounding


def test_a_sliding_window_keeps_only_its_window_and_gqa_only_the_kv_heads(registry):
    model = make_model(registry, {"name": "causal", "n_kv_heads": 2, "window": 5})
    cache = model.new_cache()
    model.forward_cached(torch.zeros(1, 12, dtype=torch.long), cache)
    k, v = cache.layers[0].state
    assert k.shape == v.shape == (1, 2, 4, 8)  # 2 kv heads, window - 1 positions


def test_linear_attention_keeps_a_state_that_does_not_grow(registry):
    model = make_model(registry, {"name": "linear", "n_kv_heads": 2})
    cache = model.new_cache()
    model.forward_cached(torch.zeros(1, 3, dtype=torch.long), cache)
    shapes = [tuple(t.shape) for t in cache.layers[0].state]
    for _ in range(10):
        model.forward_cached(torch.zeros(1, 1, dtype=torch.long), cache)
    assert (
        [tuple(t.shape) for t in cache.layers[0].state]
        == shapes
        == [(1, 2, 1, 8, 8), (1, 2, 1, 8, 1)]
    )


class PlainAttention(torch.nn.Module):
    """A third-party attention that knows nothing of the cache (written as in training)."""

    def __init__(self, options, ctx) -> None:
        super().__init__()
        self.n_heads = ctx.n_heads
        self.qkv = torch.nn.Linear(ctx.d_model, 3 * ctx.d_model)
        self.out = torch.nn.Linear(ctx.d_model, ctx.d_model)

    def forward(self, x, positional):
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2)
        )
        q, k = positional.rotate(q, k)
        bias = positional.score_bias(T)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        if bias is not None:
            mask = bias.masked_fill(~mask, float("-inf"))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class OldPositional(Positional):
    """A third-party encoding written before offsets existed: RoPE's rotation and ALiBi's
    bias, both counting positions from 0, with the old signatures."""

    def __init__(self, options, ctx) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(ctx.block_size, ctx.d_model)

    def embed(self, x):
        return x + self.table(torch.arange(x.size(1)))

    def rotate(self, q, k):
        angle = torch.arange(q.size(-2)).unsqueeze(-1) * 0.3
        return q * angle.cos() + q.flip(-1) * angle.sin(), k * angle.cos()

    def score_bias(self, seq_len):
        position = torch.arange(seq_len)
        return -0.5 * (position.unsqueeze(1) - position.unsqueeze(0)).clamp(min=0).float()


@attrs.frozen
class NoOptions:
    pass


class ThirdParty:
    @hookimpl
    def register_attention(self, register):
        register("plain", PlainAttention, options=NoOptions)

    @hookimpl
    def register_positional(self, register):
        register("old", OldPositional, options=NoOptions)


@pytest.mark.parametrize(
    ("attention", "positional"), [("plain", "rope"), ("plain", "alibi"), ("causal", "old")]
)
def test_components_that_do_not_know_the_protocol_fall_back_correctly(
    registry, attention, positional
):
    registry.add_plugin(ThirdParty(), name="third-party")
    model = make_model(registry, attention, positional)
    assert implements_cache(model.blocks[0].attn) == (attention != "plain")
    prompt = torch.randint(VOCAB, (1, 4), generator=torch.Generator().manual_seed(2))
    with_cache = generate(model, prompt, 30, temperature=0, cache=True)
    assert torch.equal(with_cache, generate(model, prompt, 30, temperature=0, cache=False))
    idx = with_cache[:, :BLOCK]
    torch.testing.assert_close(
        cached_logits(model, idx, [4, 1, 1, 10]), model(idx), atol=1e-5, rtol=0
    )


def test_the_context_slides_to_three_quarters_of_the_block(registry):
    calls = []
    model = make_model(registry, "causal")
    original = model.forward_cached

    def spy(idx, cache):
        calls.append((cache.offset, idx.size(1)))
        return original(idx, cache)

    model.forward_cached = spy
    generate(model, torch.zeros(1, 3, dtype=torch.long), 20, temperature=0)
    keep = kept_context(BLOCK)
    assert keep == 12
    # the prompt, then one token a step until the block is full, then a refill of 12
    assert calls[0] == (0, 3)
    assert calls[BLOCK - 2] == (0, keep) and all(n == 1 for _, n in calls[1 : BLOCK - 2])
    assert max(offset + n for offset, n in calls) <= BLOCK


def test_sampling_with_one_seed_is_reproducible(registry):
    model = make_model(registry, "causal")
    prompt = torch.zeros(3, 2, dtype=torch.long)

    def sample(seed, cache=True):
        generator = torch.Generator().manual_seed(seed)
        return generate(model, prompt, 25, 1.0, 10, generator, top_p=0.9, cache=cache)

    assert torch.equal(sample(5), sample(5))
    assert not torch.equal(sample(5), sample(6))


def test_top_k_one_and_a_tiny_top_p_are_greedy():
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(0))
    greedy = next_token(logits, Sampling(temperature=0))
    assert torch.equal(next_token(logits, Sampling(1.0, top_k=1)), greedy)
    assert torch.equal(next_token(logits, Sampling(1.0, top_p=1e-6)), greedy)


def test_top_p_samples_the_nucleus_in_proportion():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    logits = probs.log().expand(20000, -1)
    drawn = next_token(logits, Sampling(1.0, top_p=0.8), torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn[:, 0], minlength=4).tolist()
    assert counts[3] == 0  # 0.5 + 0.25 + 0.15 reach 0.8: the last token is out
    nucleus = [p / 0.9 * sum(counts) for p in (0.5, 0.25, 0.15)]
    result = stats.chisquare(counts[:3], nucleus)
    assert result.pvalue > 1e-3


def test_the_text_stream_holds_back_half_a_character():
    data = "é☃".encode()  # 2 + 3 bytes

    def decode(ids):
        return bytes(ids).decode("utf-8", errors="replace")

    text = TextStream(decode)
    pieces = [text.push(b) for b in data]
    assert pieces == ["", "é", "", "", "☃"]
    text = TextStream(decode)
    assert text.push(data[2]) == "" and text.finish() == "\ufffd"
