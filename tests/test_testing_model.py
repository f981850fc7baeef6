"""The kit itself, model side: it passes correct components and names each flaw.

Each component here is a plain, correct implementation with a ``flaw`` option that
breaks one part of its contract; the kit must pass the flawless one and report each
flaw with a message that says what broke.
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tel_core import hookimpl
from tel_core.errors import ConfigError
from tel_core.model.nn import Positional
from tel_core.registry.interfaces import ModelContext
from tel_core.registry.registry import Component, Source
from tel_core.testing import (
    ConformanceError,
    check_attention,
    check_ffn,
    check_norm,
    check_positional,
    model_context,
)


@attrs.frozen
class Flaw:
    #: Which part of the contract to break ("" for none).
    flaw: str = ""


def component(kind: str, factory) -> Component:
    source = Source(plugin="test", module=__name__)
    return Component(kind=kind, name="flawed", factory=factory, options=Flaw, source=source)


# -- attention ------------------------------------------------------------------------


class Attention(nn.Module):
    """Causal attention written out: scores, bias, mask, softmax."""

    def __init__(self, options: Flaw, ctx: ModelContext) -> None:
        super().__init__()
        self.flaw, self.heads = options.flaw, ctx.n_heads
        if self.flaw == "unseeded":  # initialised from a generator nobody seeds
            torch.manual_seed(torch.seed())
        self.qkv = nn.Linear(ctx.d_model, 3 * ctx.d_model)
        self.out = nn.Linear(ctx.d_model, ctx.d_model)
        self.unused = nn.Linear(2, 2) if self.flaw == "unused" else None
        self.calls = 0

    def forward(self, x: torch.Tensor, positional: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for t in self.qkv(x).split(C, dim=2)
        )
        if self.flaw != "no_rotate":
            rotated = positional.rotate(q, k)
            if self.flaw != "ignore_rotate":
                q, k = rotated
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.heads)
        if self.flaw != "no_bias" and (bias := positional.score_bias(T)) is not None:
            if self.flaw == "refuses_bias":
                raise ConfigError("attention 'flawed' forms no scores to add a bias to")
            if self.flaw == "refuses_at_length":
                raise ConfigError("attention 'flawed' forms no scores:\nsee the docs")
            if self.flaw == "crashes_on_bias":
                raise RuntimeError("shapes do not match")
            if self.flaw == "uncast_bias":
                scores = scores + bias
            elif self.flaw != "ignore_bias":
                scores = scores + bias.to(scores.dtype)
        if self.flaw != "peek":
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        y = F.dropout(y, 0.1 if self.training and self.flaw == "dropout" else 0.0)
        y = self.out(y)
        if self.flaw == "length":  # scaled by the sequence length
            y = y * T / 16
        if self.flaw == "batch":
            y = y + y.mean(0, keepdim=True)
        if self.flaw == "stateful":
            self.calls += 1
            y = y + self.calls
        if self.flaw == "narrow":
            y = y[..., :-1]
        return y


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("peek", "causality: changing token 8 changed the output before position 8"),
        ("narrow", "output shape and dtype: the output has shape (2, 16, 31); expected"),
        ("unused", "gradient reaches every parameter: no gradient reaches unused.weight"),
        ("no_rotate", "never calls positional.rotate(q, k)"),
        ("ignore_rotate", "rotating q gave the same output"),
        ("no_bias", "never calls positional.score_bias(16)"),
        ("ignore_bias", "a large score bias changed nothing"),
        ("uncast_bias", "bfloat16: raised RuntimeError"),
        ("length", "shorter sequences: a sequence of 1 gives other outputs"),
        ("batch", "batch of one: a sequence's output changes with the rest of the batch"),
        ("stateful", "the same input twice: two evaluations of one input differ"),
        ("unseeded", "deterministic under a seed: two builds under one seed differ"),
    ],
)
def test_attention_flaws_are_named(registry, flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_attention(component("attention", Attention), {"flaw": flaw}, registry=registry)
    assert str(excinfo.value).startswith("attention 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_attention_passes_with_every_positional_that_acts_in_attention(registry):
    check_attention(component("attention", Attention), registry=registry)
    check_attention(component("attention", Attention), {"flaw": "dropout"}, registry=registry)


def test_an_attention_may_refuse_a_score_bias_in_one_clear_line(registry):
    # Linear attention forms no scores: refusing ALiBi with a TelError is its contract.
    check_attention(component("attention", Attention), {"flaw": "refuses_bias"}, registry=registry)
    with pytest.raises(ConformanceError, match="score_bias to the scores: raised RuntimeError"):
        check_attention(
            component("attention", Attention), {"flaw": "crashes_on_bias"}, registry=registry
        )
    with pytest.raises(ConformanceError, match="refuse with a TelError of one clear line"):
        check_attention(
            component("attention", Attention), {"flaw": "refuses_at_length"}, registry=registry
        )


def even_heads(options, ctx):
    if ctx.n_heads % 2:
        raise ValueError(f"n_heads ({ctx.n_heads}) must be even")


def test_the_components_own_check_is_run_on_the_kits_model(registry):
    checked = attrs.evolve(component("attention", Attention), check=even_heads)
    check_attention(checked, registry=registry)
    with pytest.raises(ConformanceError, match=r"rejects the kit's model \(n_heads \(3\) must"):
        check_attention(checked, registry=registry, ctx=model_context(n_heads=3, d_model=24))
    broken = attrs.evolve(checked, check=lambda options, ctx: options.missing)
    with pytest.raises(ConformanceError, match="a check raises ValueError or ConfigError"):
        check_attention(broken, registry=registry)


class NaNRotation(Positional):
    def rotate(self, q, k):
        return q * float("nan"), k


def test_attention_is_checked_with_each_named_positional(registry):
    class Plugin:
        @hookimpl
        def register_positional(self, register):
            register("nan", lambda options, ctx: NaNRotation())

    registry.add_plugin(Plugin(), name="nan-positional")
    with pytest.raises(ConformanceError, match="with positional 'nan': the output is not finite"):
        check_attention("causal", registry=registry, positionals=["nan"])


# -- positional -----------------------------------------------------------------------


class ALiBiAndTable(Positional):
    """A learned table added to the tokens, and ALiBi's per-head linear score bias."""

    def __init__(self, options: Flaw, ctx: ModelContext) -> None:
        super().__init__()
        self.flaw, self.heads = options.flaw, ctx.n_heads
        self.table = nn.Parameter(torch.randn(ctx.block_size, ctx.d_model) * 0.02)
        slopes = 2.0 ** (-8.0 * torch.arange(1, ctx.n_heads + 1) / ctx.n_heads)
        self.register_buffer("slopes", slopes, persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        table = self.table.detach() if self.flaw == "detached" else self.table
        if self.flaw == "float32":  # a float32 term computed on the fly, never cast
            wave = torch.sin(torch.arange(T, device=x.device, dtype=torch.float32))
            return x + table[:T].to(x.dtype) + wave.unsqueeze(-1)
        if self.flaw == "length":  # positions as a share of the sequence
            return x + table[:T] * T / 16
        return x + table[:T].to(x.dtype)

    def rotate(self, q, k):
        if self.flaw == "shift":  # each key borrows from the next position
            return q, k + k.roll(-1, dims=-2)
        return q, k

    def score_bias(self, seq_len: int) -> torch.Tensor:
        pos = torch.arange(seq_len, device=self.slopes.device)
        distance = (pos.view(-1, 1) - pos.view(1, -1)).clamp(min=0).float()
        bias = -self.slopes.view(-1, 1, 1) * distance  # (nh, T, T)
        if self.flaw == "wide":
            bias = torch.cat([bias, bias[:1]])
        if self.flaw == "diagonal":
            bias = bias - torch.eye(seq_len, device=bias.device) * float("inf")
        return bias


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("length", "embed: embedding 1 tokens differs from the first 1 of 16"),
        ("float32", "bfloat16: the output is torch.float32 for torch.bfloat16 input"),
        ("detached", "gradient reaches every parameter: no gradient reaches table"),
        ("shift", "rotate: rotating 1 positions differs from the first 1 of 16"),
        ("wide", "score_bias: score_bias(16) has shape (5, 16, 16); it must broadcast to"),
        ("diagonal", "score_bias: score_bias is not finite at or below the diagonal"),
    ],
)
def test_positional_flaws_are_named(registry, flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_positional(component("positional", ALiBiAndTable), {"flaw": flaw}, registry=registry)
    assert str(excinfo.value).startswith("positional 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_positional_passes_with_every_attention(registry):
    check_positional(component("positional", ALiBiAndTable), registry=registry)


def test_a_positional_is_checked_with_each_registered_attention(registry):
    class Fragile(Attention):
        """Takes only a (T, T) score bias: ALiBi's per-head bias breaks it."""

        def forward(self, x, positional):
            T = x.size(1)
            shared = _OneBias(positional.score_bias(T).view(T, T))
            return super().forward(x, shared)

    class Plugin:
        @hookimpl
        def register_attention(self, register):
            register("fragile", Fragile, options=Flaw)

    registry.add_plugin(Plugin(), name="fragile-attention")
    with pytest.raises(ConformanceError, match="with attention 'fragile': raised RuntimeError"):
        check_positional(component("positional", ALiBiAndTable), registry=registry)


class _OneBias(Positional):
    def __init__(self, bias):
        super().__init__()
        self.bias = bias

    def score_bias(self, seq_len):
        return self.bias[:seq_len, :seq_len]


def test_a_positional_must_be_a_positional(registry):
    with pytest.raises(
        ConformanceError, match=r"Identity; expected a subclass of tel_core\.plugin\.Positional"
    ):
        check_positional(component("positional", lambda o, ctx: nn.Identity()), registry=registry)


# -- norm -----------------------------------------------------------------------------


class Norm(nn.Module):
    """RMS normalisation with a gain, and an eps that the flaw "no_eps" drops."""

    def __init__(self, options: Flaw, dim: int) -> None:
        super().__init__()
        self.flaw = options.flaw
        self.gain = nn.Parameter(torch.ones(32 if self.flaw == "fixed_width" else dim))
        self.unused = nn.Parameter(torch.ones(1)) if self.flaw == "unused" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 0.0 if self.flaw == "no_eps" else 1e-6
        dim = -2 if self.flaw == "over_sequence" else -1
        y = x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps) * self.gain
        return y.float() if self.flaw == "float32" else y


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("no_eps", "zero input: the output is not finite"),
        ("over_sequence", "each position on its own: changing position 0 of sequence 0"),
        ("float32", "bfloat16: the output is torch.float32 for torch.bfloat16 input"),
        ("unused", "gradient reaches every parameter: no gradient reaches unused"),
        ("fixed_width", "builds for another width: raised RuntimeError"),
    ],
)
def test_norm_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_norm(component("norm", Norm), {"flaw": flaw})
    assert str(excinfo.value).startswith("norm 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_norm_passes():
    check_norm(component("norm", Norm))


# -- ffn ------------------------------------------------------------------------------


class FFN(nn.Module):
    def __init__(self, options: Flaw, ctx: ModelContext) -> None:
        super().__init__()
        self.flaw, self.p = options.flaw, ctx.dropout
        self.up = nn.Linear(ctx.d_model, 2 * ctx.d_model)
        self.down = nn.Linear(2 * ctx.d_model, ctx.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.up(x))
        if self.flaw == "cumsum":  # a running sum over the sequence mixes positions
            h = h.cumsum(1)
        if self.training and self.p and self.flaw == "own_rng":
            keep = torch.rand(h.shape, generator=torch.Generator().manual_seed(torch.seed()))
            h = h * (keep > self.p) / (1 - self.p)
        else:
            h = F.dropout(h, self.p, self.training)
        return self.down(h)


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("cumsum", "each position on its own: changing position 0 of sequence 0"),
        ("own_rng", "dropout under a seed: two training-mode passes under one seed differ"),
    ],
)
def test_ffn_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_ffn(component("ffn", FFN), {"flaw": flaw})
    assert str(excinfo.value).startswith("ffn 'flawed': ")
    assert message in str(excinfo.value)


def test_a_correct_ffn_passes():
    check_ffn(component("ffn", FFN))


def test_a_module_is_required():
    with pytest.raises(
        ConformanceError, match=r"a value of type int; expected a torch\.nn\.Module"
    ):
        check_ffn(component("ffn", lambda options, ctx: 3))


# -- the KV cache protocol -------------------------------------------------------------


class CachedAttention(Attention):
    """Attention with the simplest KV cache: it keeps its inputs."""

    def forward_cached(self, x, positional, cache):
        inputs = x if cache.state is None else torch.cat((cache.state, x), dim=1)
        cache.state = inputs
        return self.forward(inputs, positional)[:, -x.size(1) :]


class ForgetfulAttention(Attention):
    def forward_cached(self, x, positional, cache):
        return self.forward(x, positional)  # as if each piece began the sequence


def test_an_attention_with_a_cache_is_held_to_its_forward(registry):
    check_attention(component("attention", CachedAttention), registry=registry)
    with pytest.raises(ConformanceError, match="the KV cache gives forward's outputs: feeding"):
        check_attention(component("attention", ForgetfulAttention), registry=registry)


class ShiftedOffsets(ALiBiAndTable):
    """Takes offsets, and gets them wrong: counts from offset - 1."""

    def embed(self, x, offset=0):
        return x + self.table[offset - 1 : offset - 1 + x.size(1)] if offset else super().embed(x)


def test_a_positional_that_takes_offsets_is_held_to_its_whole_sequence(registry):
    with pytest.raises(ConformanceError, match=r"offsets \(generation with a KV cache\): embed at"):
        check_positional(component("positional", ShiftedOffsets), registry=registry)
