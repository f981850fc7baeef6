"""What the softmax attention variants share: heads, grouped keys and values, QK-norm,
the causal (optionally sliding-window) mask, and the output projection.

``causal``, ``eager`` and ``manual`` differ only in ``attend``: how probabilities and the
weighted sum are computed from q, k and v. ``linear`` reuses the projections. This module
registers nothing itself.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from tel_core.interfaces import ModelContext
from tel_core.nn import Attention, Positional, mark_residual_projection

_optional_positive = attrs.validators.optional(attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class HeadOptions:
    #: Key/value heads: n_heads (the default) is multi-head attention, a divisor of n_heads
    #: grouped-query attention (GQA), 1 multi-query attention (MQA).
    n_kv_heads: int | None = attrs.field(default=None, validator=_optional_positive)
    #: Normalise q and k per head (with the experiment's norm) before their dot product.
    qk_norm: bool = False


@attrs.frozen(kw_only=True)
class SoftmaxOptions(HeadOptions):
    #: Sliding window: each position sees itself and the window - 1 positions before it.
    #: Leave it out to see every earlier position.
    window: int | None = attrs.field(default=None, validator=_optional_positive)


def check_heads(options: HeadOptions, ctx: ModelContext) -> None:
    if options.n_kv_heads is not None and ctx.n_heads % options.n_kv_heads:
        raise ValueError(
            f"n_kv_heads ({options.n_kv_heads}) must divide n_heads ({ctx.n_heads}): "
            f"each key/value head serves a whole group of query heads"
        )


def allowed(T: int, window: int | None, device: torch.device) -> torch.Tensor:
    """(T, T) bool: True where query i may attend to key j (j <= i, and i - j < window)."""
    i = torch.arange(T, device=device).unsqueeze(1)
    j = torch.arange(T, device=device).unsqueeze(0)
    mask = j <= i
    if window is not None:
        mask &= i - j < window
    return mask


class MultiHeadAttention(Attention):
    """Projections to heads and back; subclasses implement ``attend``."""

    def __init__(self, options: HeadOptions, ctx: ModelContext) -> None:
        super().__init__()
        self.n_heads = ctx.n_heads
        self.n_kv_heads = options.n_kv_heads or ctx.n_heads
        self.head_dim = ctx.head_dim
        self.dropout = ctx.dropout
        kv = self.n_kv_heads * self.head_dim
        # One matrix for q, k and v: (B, T, C) -> (B, T, C + 2 * kv).
        self.qkv = nn.Linear(ctx.d_model, ctx.d_model + 2 * kv, bias=ctx.bias)
        self.out = mark_residual_projection(nn.Linear(ctx.d_model, ctx.d_model, bias=ctx.bias))
        # QK-norm keeps the logits bounded however large q and k grow.
        self.q_norm = ctx.make_norm(self.head_dim) if options.qk_norm else nn.Identity()
        self.k_norm = ctx.make_norm(self.head_dim) if options.qk_norm else nn.Identity()

    def heads(
        self, x: torch.Tensor, positional: Positional
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q, k, v, each (B, nh, T, hs), normed and rotated."""
        B, T, C = x.shape
        kv = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split((C, kv, kv), dim=2)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.n_kv_heads != self.n_heads:
            # Each kv head serves n_heads / n_kv_heads consecutive query heads. Repeating
            # them costs nothing in parameters; GQA's saving is the KV cache at inference.
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        q, k = positional.rotate(q, k)
        return q, k, v

    def forward(self, x: torch.Tensor, positional: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x, positional)
        y = self.attend(q, k, v, positional.score_bias(T))  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.out(y)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """q, k, v (B, nh, T, hs) and a score bias or None -> (B, nh, T, hs)."""
        raise NotImplementedError
