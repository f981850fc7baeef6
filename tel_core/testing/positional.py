"""``check_positional``: the contract of ``register_positional`` factories.

A positional encoding acts in up to three places (``embed``, ``rotate``, ``score_bias``);
each part must keep shapes and dtypes, count positions from 0 whatever the sequence
length, and leave causality intact in every registered attention variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import torch
from torch import nn

from tel_core.model.kv_cache import embed_at, rotate_at, score_bias_at
from tel_core.model.nn import Positional
from tel_core.registry.interfaces import ModelContext
from tel_core.registry.registry import Component, Registry
from tel_core.testing.attention import acts_in_attention, attention_core
from tel_core.testing.subject import (
    check_model_check,
    check_options,
    fail,
    partners,
    subject,
)
from tel_core.testing.tensors import (
    BATCH,
    BF16_RTOL,
    backward,
    bf16_copy,
    expect_close,
    expect_gradients,
    expect_tensor,
    model_context,
    randn,
    same_state,
    seeded,
)


def check_positional(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    ctx: ModelContext | None = None,
    attentions: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> None:
    """Check a positional encoding against the ``register_positional`` contract.

    Builds it with ``factory(options, ctx)`` and checks that it is a
    ``tel_core.plugin.Positional``; that ``embed`` and ``rotate`` keep shape and dtype, and
    give a shorter sequence the first positions of a longer one (positions count from 0);
    that ``score_bias(T)`` is None or a finite-where-it-counts tensor broadcastable to
    (B, heads, T, T) whose top-left corner is ``score_bias`` of a shorter sequence; that
    at an ``offset`` (generation with a KV cache) each part gives the later positions of
    the whole sequence (through its own ``offset`` argument, or tel's fallback); that a
    gradient reaches every parameter through attention; two builds under one seed are
    identical; bfloat16 works close to float32. If it acts inside attention, every
    registered attention variant (or those named in ``attentions``) is checked with it:
    shape, causality, shorter sequences, a batch of one, gradients; an attention may
    refuse the pair with a one-line ``TelError`` (linear attention takes no score bias).

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("positional", component, options, registry)
    check_options(s)
    ctx = ctx or model_context()
    device = torch.device(device)

    def build() -> Positional:
        # Built once for the whole model, as the core builds it: for no block in particular.
        model_wide = attrs.evolve(ctx, layer=None)
        return s.build_a(Positional, "a subclass of tel_core.plugin.Positional", model_wide).to(
            device
        )

    check_model_check(s, ctx)
    with s.check("builds a tel_core.plugin.Positional"):
        build()
    positional = seeded(build).eval()
    T, C, H, D = ctx.block_size, ctx.d_model, ctx.n_heads, ctx.head_dim
    x = randn(BATCH, T, C, device=device)
    q, k = (
        randn(BATCH, H, T, D, device=device, seed=1),
        randn(BATCH, H, T, D, device=device, seed=2),
    )
    with s.check("embed"):
        full = expect_tensor(positional.embed(x), (BATCH, T, C), x.dtype)
        for length in sorted({1, T // 2}):
            expect_close(
                positional.embed(x[:, :length]),
                full[:, :length],
                f"embedding {length} tokens differs from the first {length} of {T}: "
                f"positions must count from 0 whatever the sequence length",
            )
        expect_close(positional.embed(x[:1]), full[:1], "an embedding changes with the batch")
    with s.check("rotate"):
        rq, rk = positional.rotate(q, k)
        expect_tensor(rq, tuple(q.shape), q.dtype, "rotated q")
        expect_tensor(rk, tuple(k.shape), k.dtype, "rotated k")
        for length in sorted({1, T // 2}):
            sq, sk = positional.rotate(q[:, :, :length], k[:, :, :length])
            problem = f"rotating {length} positions differs from the first {length} of {T}"
            expect_close(sq, rq[:, :, :length], problem)
            expect_close(sk, rk[:, :, :length], problem)
    with s.check("score_bias"):
        _check_score_bias(positional, BATCH, H, T)
    with s.check("offsets (generation with a KV cache)"):
        _check_offsets(positional, x, q, k, full, (rq, rk), BATCH, H, T)
    with s.check("gradient reaches every parameter"):
        positional.train()
        inputs = x.clone().requires_grad_()
        backward(_reference_attention(inputs, positional, H))
        expect_gradients(positional, inputs)
        positional.eval()
    with s.check("deterministic under a seed"):
        same_state(seeded(build), seeded(build), "two builds under one seed differ")
    with s.check("bfloat16"):
        low = bf16_copy(positional)
        expect_close(
            expect_tensor(low.embed(x.bfloat16()), tuple(x.shape), torch.bfloat16),
            full,
            "in bfloat16, embed strays from float32 further than rounding explains",
            atol=BF16_RTOL,
        )
        lq, lk = low.rotate(q.bfloat16(), k.bfloat16())
        for name, got, ref in (("q", lq, rq), ("k", lk, rk)):
            expect_tensor(got, tuple(ref.shape), torch.bfloat16, f"rotated {name}")
            expect_close(got, ref, f"in bfloat16, rotated {name} strays from float32", BF16_RTOL)
    if acts_in_attention(positional):
        for name, make in _attentions(s.registry, ctx, attentions, device):
            suffix = f" with attention {name!r}"
            attention_core(s, make, seeded(build), ctx, device, suffix, partner=True)


def _check_score_bias(positional: Positional, B: int, H: int, T: int) -> None:
    bias = positional.score_bias(T)
    if bias is None:
        return
    if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
        fail(f"score_bias({T}) must be None or a float tensor, got {bias!r}")
    try:
        shape = torch.broadcast_shapes(bias.shape, (B, H, T, T))
    except RuntimeError:
        shape = None
    if shape != (B, H, T, T):
        fail(f"score_bias({T}) has shape {tuple(bias.shape)}; it must broadcast to {(B, H, T, T)}")
    allowed = torch.ones(T, T, dtype=torch.bool, device=bias.device).tril()
    if not torch.isfinite(bias.expand(B, H, T, T)[..., allowed]).all():
        fail("score_bias is not finite at or below the diagonal, where attention looks")
    for length in sorted({1, T // 2}):
        short = positional.score_bias(length)
        if short is None:
            fail(f"score_bias({length}) is None but score_bias({T}) is not")
        expect_close(
            short.expand(B, H, length, length),
            bias.expand(B, H, T, T)[..., :length, :length],
            f"score_bias({length}) differs from the top-left corner of score_bias({T})",
        )


def _check_offsets(
    positional: Positional,
    x: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    embedded: torch.Tensor,
    rotated: tuple[torch.Tensor, torch.Tensor],
    B: int,
    H: int,
    T: int,
) -> None:
    """Positions offset.. of a sequence, handed in alone with their offset, get what they
    got as part of the whole."""
    for offset in sorted({1, T // 2, T - 1} - {0}):
        expect_close(
            embed_at(positional, x[:, offset:], offset),
            embedded[:, offset:],
            f"embed at offset {offset} differs from positions {offset}.. of the whole "
            f"sequence: count positions from offset",
        )
        rq, rk = rotate_at(positional, q[:, :, offset:], k[:, :, offset:], offset)
        problem = f"rotate at offset {offset} differs from positions {offset}.. of the whole"
        expect_close(rq, rotated[0][:, :, offset:], problem)
        expect_close(rk, rotated[1][:, :, offset:], problem)
        whole = positional.score_bias(T)
        part = score_bias_at(positional, T - offset, offset)
        if (whole is None) != (part is None):
            fail(f"score_bias at offset {offset} is {part!r} where score_bias({T}) is not")
        if whole is not None:
            expect_close(
                part.expand(B, H, T - offset, T),
                whole.expand(B, H, T, T)[..., offset:, :],
                f"score_bias({T - offset}, offset={offset}) differs from rows {offset}.. of "
                f"score_bias({T})",
            )


def _reference_attention(x: torch.Tensor, positional: Positional, heads: int) -> torch.Tensor:
    """Plain causal attention with q = k = v = the embedded input: every part gets used."""
    B, T, C = x.shape
    x = positional.embed(x)
    q = k = v = x.view(B, T, heads, C // heads).transpose(1, 2)  # (B, nh, T, hs)
    q, k = positional.rotate(q, k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // heads)
    if (bias := positional.score_bias(T)) is not None:
        scores = scores + bias
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1) @ v


def _attentions(
    registry: Registry, ctx: ModelContext, names: Iterable[str] | None, device: torch.device
) -> Iterator[tuple[str, Any]]:
    """Builders of the attention variants to pair with: the named ones, or all registered."""
    for name, component, _ in partners("attention", registry, ctx, names):

        def make(component: Component = component) -> nn.Module:
            return component.factory(component.options(), ctx).to(device)

        yield name, make
