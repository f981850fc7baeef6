"""``check_attention``: the contract of ``register_attention`` factories.

An attention variant maps (B, T, d_model) to the same shape, never lets position t see
anything after t, and works with whatever positional encoding the experiment chose:
it calls ``positional.rotate`` on q and k and adds ``positional.score_bias`` to its
scores. The core of these checks also runs from ``check_positional``, pairing each
positional encoding with the registered attention variants.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import torch
from torch import nn

from tel_core.errors import TelError
from tel_core.model.kv_cache import KVCache, implements_cache
from tel_core.model.nn import Positional
from tel_core.registry.interfaces import ModelContext
from tel_core.registry.registry import Component, Registry
from tel_core.testing.autocast import cuda_autocast
from tel_core.testing.subject import (
    Subject,
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
    max_diff,
    model_context,
    perturb,
    randn,
    same_state,
    seeded,
)

AttentionBuilder = Callable[[], nn.Module]


def check_attention(
    component: str | Component,
    options: Any = None,
    *,
    registry: Registry | None = None,
    ctx: ModelContext | None = None,
    positionals: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> None:
    """Check an attention variant against the ``register_attention`` contract.

    Builds it with ``factory(options, ctx)`` (default ``model_context()``) and checks,
    with a positional encoding that does nothing: output shape, dtype and finiteness;
    the same input twice gives the same output; causality (changing token t changes no
    output before t); a sequence of one, or of any shorter length, gives the first
    outputs of a longer one; a batch of one; a gradient reaches every parameter and the
    input; if it implements the KV cache protocol (``forward_cached``), feeding a sequence
    through its cache in pieces gives ``forward``'s outputs. Then: it calls
    ``positional.rotate`` on q and k and ``positional.score_bias``,
    and their results change its output; two builds under one seed are identical, and
    so are two training passes (dropout included); bfloat16 stays close to float32, also
    with a float32 score bias. The core checks then run again with every registered
    positional encoding that acts inside attention (or the ones named in
    ``positionals``).

    Raises ``ConformanceError`` naming the check and what broke.
    """
    s = subject("attention", component, options, registry)
    check_options(s)
    ctx = ctx or model_context()
    device = torch.device(device)

    def build(context: ModelContext = ctx) -> nn.Module:
        return s.build_a(nn.Module, "a torch.nn.Module", context).to(device)

    check_model_check(s, ctx)
    with s.check("builds a torch.nn.Module"):
        build()
    attention_core(s, build, Positional(), ctx, device)
    x = randn(BATCH, ctx.block_size, ctx.d_model, device=device)
    with s.check("calls positional.rotate and score_bias"):
        _calls_positional(seeded(build).eval(), x, ctx)
    takes_bias = _positional_effects(s, build, x, ctx, device)
    with s.check("deterministic under a seed"):
        _deterministic(build, attrs.evolve(ctx, dropout=0.1), x)
    with s.check("bfloat16"):
        module = seeded(build).eval()
        for positional in (Positional(), _Bias(ctx, device)) if takes_bias else (Positional(),):
            reference = module(x, positional)
            low = expect_tensor(
                bf16_copy(module)(x.bfloat16(), positional), tuple(x.shape), torch.bfloat16
            )
            expect_close(
                low,
                reference,
                f"in bfloat16 the output strays from float32 further than rounding explains"
                f"{' (with a float32 score bias)' if isinstance(positional, _Bias) else ''}",
                atol=BF16_RTOL,
            )
    for dtype in (torch.bfloat16, torch.float16):
        with s.check(f"{dtype} under CUDA autocast's rules"):
            _cuda_rules(seeded(build), x, dtype)
    for name, positional in _positionals(s.registry, ctx, positionals):
        suffix = f" with positional {name!r}"
        attention_core(s, build, positional.to(device), ctx, device, suffix, partner=True)


#: How far the output under autocast may stray from float32's, relative to its scale.
AUTOCAST_RTOL = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


def _cuda_rules(module: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> None:
    """Forward (and the KV cache) under CUDA autocast's dtype rules, emulated on the CPU,
    then backward: what a GPU run in bf16 or fp16 does (``tel_core.testing.autocast``)."""
    module.eval()
    reference = module(x, Positional()).detach()
    inputs = x.clone().requires_grad_()
    with cuda_autocast(dtype):
        out = module(inputs, Positional())
    if not torch.isfinite(out).all():
        fail(f"non-finite output under {dtype} autocast")
    error = max_diff(out.float(), reference) / reference.abs().max().item()
    if error > AUTOCAST_RTOL[dtype]:
        fail(
            f"under {dtype} autocast the output strays from float32 by {error:.2g} of its "
            f"scale: keep sums and running statistics out of autocast, in float32"
        )
    try:
        out.float().square().mean().backward()
    except RuntimeError as exc:
        fail(
            f"backward under {dtype} autocast failed: {exc}. CUDA autocast runs exp, sum, "
            f"softmax... in float32: a hand-written backward must accept gradients and saved "
            f"tensors of different dtypes (cast them, or run the Function in float32)"
        )
    expect_gradients(module, inputs)
    if implements_cache(module):
        with torch.no_grad(), cuda_autocast(dtype):
            cache, pieces = KVCache(1), []
            for start, end in itertools.pairwise(sorted({0, x.size(1) // 2, x.size(1)})):
                pieces.append(module.forward_cached(x[:, start:end], Positional(), cache.layers[0]))
                cache.advance(end - start)
            cached = torch.cat(pieces, dim=1).float()
        error = max_diff(cached, out.detach().float()) / reference.abs().max().item()
        if error > AUTOCAST_RTOL[dtype]:
            fail(f"under {dtype} autocast forward_cached strays from forward by {error:.2g}")


def attention_core(
    s: Subject,
    build: AttentionBuilder,
    positional: Positional,
    ctx: ModelContext,
    device: torch.device,
    suffix: str = "",
    partner: bool = False,
) -> None:
    """Shape, repeatability, causality, shorter sequences, a batch of one, gradients.

    With a ``partner`` (a registered component paired with the one under test), a
    ``TelError`` on the first call is a clear refusal of the pair, not a failure: linear
    attention, say, cannot add ALiBi's score bias, and says so in one line.
    """
    T, C = ctx.block_size, ctx.d_model
    module = seeded(build).eval()
    positional.eval()
    x = randn(BATCH, T, C, device=device)
    with s.check("output shape and dtype" + suffix):
        try:
            out = module(x, positional)
        except TelError as exc:
            if not partner:
                raise
            _one_line(exc)
            return
        out = expect_tensor(out, (BATCH, T, C), torch.float32)
    with s.check("the same input twice" + suffix):
        if not torch.equal(module(x, positional), out):
            fail("two evaluations of one input differ: does forward keep state between calls?")
    with s.check("causality" + suffix):
        for t in sorted({0, T // 2, T - 1}):
            changed = x.clone()
            changed[:, t] = perturb(changed[:, t])
            after = module(changed, positional)
            expect_close(
                after[:, :t],
                out[:, :t],
                f"changing token {t} changed the output before position {t}: the output at "
                f"t must not depend on any input after t",
            )
            if torch.equal(after[:, t:], out[:, t:]):
                fail(f"changing token {t} changed no output at all: is the input used?")
    with s.check("shorter sequences" + suffix):
        for length in sorted({1, T // 2}):
            part = expect_tensor(module(x[:, :length], positional), (BATCH, length, C), x.dtype)
            expect_close(
                part,
                out[:, :length],
                f"a sequence of {length} gives other outputs than the first {length} positions "
                f"of a longer one: the output at t may depend only on tokens 0..t",
            )
    with s.check("batch of one" + suffix):
        one = expect_tensor(module(x[:1], positional), (1, T, C), x.dtype)
        expect_close(one, out[:1], "a sequence's output changes with the rest of the batch")
        expect_tensor(module(x[:1, :1], positional), (1, 1, C), x.dtype)
    if implements_cache(module):
        with s.check("the KV cache gives forward's outputs" + suffix):
            _cached_equals_forward(module, x, positional, out)
    with s.check("gradient reaches every parameter" + suffix):
        module.train()
        inputs = x.clone().requires_grad_()
        backward(module(inputs, positional))
        expect_gradients(module, inputs)


def _cached_equals_forward(
    module: nn.Module, x: torch.Tensor, positional: Positional, out: torch.Tensor
) -> None:
    """The sequence fed in pieces (half of it, then one position, then the rest) through
    ``forward_cached`` and a fresh cache gives what ``forward`` gave for the whole."""
    T = x.size(1)
    cuts = sorted({0, T // 2, T // 2 + 1, T})
    cache = KVCache(1)
    pieces = []
    for start, end in itertools.pairwise(cuts):
        piece = module.forward_cached(x[:, start:end], positional, cache.layers[0])
        pieces.append(expect_tensor(piece, (x.size(0), end - start, x.size(2)), x.dtype))
        cache.advance(end - start)
    expect_close(
        torch.cat(pieces, dim=1),
        out,
        "feeding the sequence through forward_cached in pieces gives other outputs than "
        "forward on the whole: keep in cache.state what later positions need, and ask the "
        "positional encoding at cache.offset (tel_core.plugin.rotate_at, score_bias_at)",
    )


def _positional_effects(
    s: Subject, build: AttentionBuilder, x: torch.Tensor, ctx: ModelContext, device: torch.device
) -> bool:
    """Rotations and score biases change the output; returns whether it takes a score bias.

    An attention that forms no scores (linear attention) may refuse a score bias with a
    one-line ``TelError``; any other error, or a bias that changes nothing, fails.
    """
    module = seeded(build).eval()
    plain = module(x, Positional())
    one_position = ctx.block_size < 2  # a softmax over one key cannot show either
    with s.check("uses what positional.rotate returns"):
        if not one_position and max_diff(module(x, _FlipQueries()), plain) < 1e-4:
            fail("rotating q gave the same output: compute the scores from the q and k it returns")
    with s.check("adds positional.score_bias to the scores"):
        try:
            biased = module(x, _Bias(ctx, device))
        except TelError as exc:
            _one_line(exc)
            return False
        if not one_position and max_diff(biased, plain) < 1e-4:
            fail("a large score bias changed nothing: add positional.score_bias(T) to the scores")
    return True


def _one_line(refusal: TelError) -> None:
    """A refusal is for people: one line that says what cannot be combined."""
    if not str(refusal).strip() or "\n" in str(refusal).strip():
        fail(f"it refused with {str(refusal)!r}; refuse with a TelError of one clear line")


def _calls_positional(module: nn.Module, x: torch.Tensor, ctx: ModelContext) -> None:
    spy = _Spy()
    module(x, spy)
    B, T = x.shape[:2]
    if not spy.rotated:
        fail("forward never calls positional.rotate(q, k), so rope would do nothing")
    for q_shape, k_shape in spy.rotated:
        for name, shape in (("q", q_shape), ("k", k_shape)):
            if len(shape) != 4 or shape[0] != B or shape[2] != T:
                fail(f"rotate got {name} of shape {shape}; expected (B, heads, T, head_dim)")
    if T not in spy.biased:
        fail(f"forward never calls positional.score_bias({T}), so ALiBi would do nothing")


def _deterministic(build: Callable[[ModelContext], nn.Module], ctx: ModelContext, x: Any) -> None:
    def once() -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(1234)
        module = build(ctx).train()
        return module, module(x, Positional())

    (first, a), (second, b) = once(), once()
    same_state(first, second, "two builds under one seed differ (use torch's seeded RNG)")
    if not torch.equal(a, b):
        fail("two training-mode passes under one seed differ (dropout must use torch's RNG)")


def _positionals(
    registry: Registry, ctx: ModelContext, names: Iterable[str] | None
) -> Iterator[tuple[str, Positional]]:
    """The positional encodings to pair with: the named ones, or all that act in attention."""
    for name, _, positional in partners("positional", registry, ctx, names):
        if names is not None or acts_in_attention(positional):
            yield name, positional


def acts_in_attention(positional: Positional) -> bool:
    """Whether a positional encoding overrides ``rotate`` or ``score_bias``."""
    kind = type(positional)
    return kind.rotate is not Positional.rotate or kind.score_bias is not Positional.score_bias


class _Spy(Positional):
    """Records how attention calls it, and changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.rotated: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self.biased: list[int] = []

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rotated.append((tuple(q.shape), tuple(k.shape)))
        return q, k

    def score_bias(self, seq_len: int) -> None:
        self.biased.append(seq_len)
        return None


class _FlipQueries(Positional):
    """A rotation whose effect cannot go unnoticed: each query's features reversed."""

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q.flip(-1), k


class _Bias(Positional):
    """A large float32 per-head bias on the scores, as ALiBi gives (always float32)."""

    def __init__(self, ctx: ModelContext, device: torch.device) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        T = ctx.block_size
        self.bias = 4 * torch.randn(ctx.n_heads, T, T, generator=generator).to(device)

    def score_bias(self, seq_len: int) -> torch.Tensor:
        return self.bias[:, :seq_len, :seq_len]
