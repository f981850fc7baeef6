"""``check_norm`` and ``check_ffn``: layers that act on each position on its own.

A norm normalises the last dimension; a feed-forward block maps each position's vector
independently. Either way, changing one position must change no other one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import nn

from tel_core.registry.interfaces import ModelContext
from tel_core.registry.registry import Component, Registry
from tel_core.testing.subject import (
    Subject,
    check_model_check,
    check_options,
    fail,
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
    perturb,
    randn,
    same_state,
    seeded,
)

T = 8  # positions in the test inputs


def check_norm(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    dim: int = 32,
    device: str | torch.device = "cpu",
) -> None:
    """Check a norm against the ``register_norms`` contract.

    Builds it with ``factory(options, dim)`` (and for another width) and checks: a
    ``torch.nn.Module`` keeping shape and dtype of 3-D and 2-D inputs; each position
    normalised on its own; finite output for an all-zero input and for a huge one (guard
    the division with an eps); a gradient reaches every parameter; two builds under one
    seed are identical; bfloat16 close to float32.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("norm", component, options, registry)
    check_options(s)
    device = torch.device(device)

    def build(width: int = dim) -> nn.Module:
        return s.build_a(nn.Module, "a torch.nn.Module", width).to(device)

    check_model_check(s, model_context(d_model=dim))
    with s.check("builds a torch.nn.Module"):
        build()
    with s.check("builds for another width"):
        other = dim // 4 or 1
        narrow = randn(BATCH, T, other, device=device)
        expect_tensor(build(other)(narrow), tuple(narrow.shape), narrow.dtype)
    x = randn(BATCH, T, dim, device=device)
    with s.check("2-D input"):
        expect_tensor(seeded(build)(x[0]), (T, dim), x.dtype)
    with s.check("zero input"):
        expect_tensor(seeded(build)(torch.zeros_like(x)), tuple(x.shape), x.dtype)
    with s.check("huge input"):
        expect_tensor(seeded(build)(x * 1e4), tuple(x.shape), x.dtype)
    _positionwise(s, build, x)


def check_ffn(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    ctx: ModelContext | None = None,
    device: str | torch.device = "cpu",
) -> None:
    """Check a feed-forward block against the ``register_ffn`` contract.

    Builds it with ``factory(options, ctx)`` and checks: a ``torch.nn.Module`` mapping
    (B, T, d_model) to the same shape and dtype; each position mapped on its own (also a
    batch of one and a sequence of one); a gradient reaches every parameter; two builds
    under one seed are identical, dropout included; bfloat16 close to float32.

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("ffn", component, options, registry)
    check_options(s)
    ctx = ctx or model_context()
    device = torch.device(device)

    def build(context: ModelContext = ctx) -> nn.Module:
        return s.build_a(nn.Module, "a torch.nn.Module", context).to(device)

    check_model_check(s, ctx)
    with s.check("builds a torch.nn.Module"):
        build()
    x = randn(BATCH, T, ctx.d_model, device=device)
    _positionwise(s, build, x)
    with s.check("dropout under a seed"):
        dropping = attrs.evolve(ctx, dropout=0.1)
        first, second = seeded(lambda: build(dropping)), seeded(lambda: build(dropping))
        torch.manual_seed(5)
        a = first.train()(x)
        torch.manual_seed(5)
        if not torch.equal(a, second.train()(x)):
            fail("two training-mode passes under one seed differ (dropout must use torch's RNG)")


def _positionwise(s: Subject, build: Callable[[], nn.Module], x: torch.Tensor) -> None:
    """The checks norms and feed-forward blocks share."""
    module = seeded(build).eval()
    with s.check("output shape and dtype"):
        out = expect_tensor(module(x), tuple(x.shape), x.dtype)
    with s.check("the same input twice"):
        if not torch.equal(module(x), out):
            fail("two evaluations of one input differ: does forward keep state between calls?")
    with s.check("each position on its own"):
        for t in (0, x.shape[1] - 1):
            changed = x.clone()
            changed[0, t] = perturb(changed[0, t])
            after = module(changed)
            others = torch.ones(x.shape[:2], dtype=torch.bool)
            others[0, t] = False
            expect_close(
                after[others],
                out[others],
                f"changing position {t} of sequence 0 changed other positions: act on each "
                f"position's vector alone",
            )
            if torch.equal(after[0, t], out[0, t]):
                fail(f"changing position {t} did not change its output: is the input used?")
    with s.check("batch of one and sequence of one"):
        expect_close(module(x[:1]), out[:1], "a sequence changes with the batch")
        one = expect_tensor(module(x[:1, :1]), (1, 1, x.shape[-1]), x.dtype)
        expect_close(one, out[:1, :1], "a sequence of one differs from a longer one's start")
    with s.check("gradient reaches every parameter"):
        module.train()
        inputs = x.clone().requires_grad_()
        backward(module(inputs))
        expect_gradients(module, inputs)
        module.eval()
    with s.check("deterministic under a seed"):
        same_state(seeded(build), seeded(build), "two builds under one seed differ")
    with s.check("bfloat16"):
        low = expect_tensor(bf16_copy(module)(x.bfloat16()), tuple(x.shape), torch.bfloat16)
        expect_close(
            low,
            out,
            "in bfloat16 the output strays from float32 further than rounding explains",
            atol=BF16_RTOL,
        )
