"""What the softmax attention variants share: heads, grouped keys and values, QK-norm,
the causal (optionally sliding-window) mask, and the output projection.

``causal``, ``eager`` and ``manual`` differ only in ``attend``: how probabilities and the
weighted sum are computed from q, k and v. ``linear`` reuses the projections. This module
registers nothing itself.

Generation goes through ``forward_cached`` (the KV cache protocol of ``tel_core.model.kv_cache``):
the keys and values of earlier positions are kept, after rotation and before the kv heads
are repeated for GQA, and with a sliding window only the last ``window - 1`` of them. The
three softmax variants compute the same function, so they share one cached path (SDPA
with an explicit mask); training never takes it.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from tel_core.plugin import (
    Attention,
    LayerCache,
    ModelContext,
    Positional,
    mark_residual_projection,
    rotate_at,
    score_bias_at,
)

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


def allowed_between(
    queries: int, keys: int, offset: int, window: int | None, device: torch.device
) -> torch.Tensor:
    """(queries, keys) bool for cached attention: the queries are the last ``queries`` of
    ``offset + queries`` positions, the keys the last ``keys`` of them."""
    i = torch.arange(offset, offset + queries, device=device).unsqueeze(1)
    j = torch.arange(offset + queries - keys, offset + queries, device=device).unsqueeze(0)
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

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q (B, nh, T, hs) and k, v (B, nkv, T, hs), normed, not rotated."""
        B, T, C = x.shape
        kv = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split((C, kv, kv), dim=2)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return self.q_norm(q), self.k_norm(k), v

    @property
    def group(self) -> int:
        """Query heads per kv head (1 without GQA)."""
        return self.n_heads // self.n_kv_heads

    def repeat_kv(self, t: torch.Tensor) -> torch.Tensor:
        """(B, nkv, T, hs) -> (B, nh, T, hs): each kv head for its group of query heads."""
        # Repeating costs nothing in parameters; GQA's saving is the KV cache at inference.
        return t if self.group == 1 else t.repeat_interleave(self.group, dim=1)

    def heads(
        self, x: torch.Tensor, positional: Positional
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q, k, v, each (B, nh, T, hs), normed and rotated."""
        q, k, v = self.project(x)
        # Each kv head serves n_heads / n_kv_heads consecutive query heads.
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        q, k = positional.rotate(q, k)
        return q, k, v

    def new_heads(
        self, x: torch.Tensor, positional: Positional, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``heads`` for positions offset.., except that k and v keep their nkv heads."""
        q, k, v = self.project(x)
        # rotate sees (B, nh, T, hs) for both, as in training; every head of a group gets
        # the same rotation, so one per kv head is kept.
        q, k = rotate_at(positional, q, self.repeat_kv(k), offset)
        return q, k[:, :: self.group], v

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


class SoftmaxHeads(MultiHeadAttention):
    """The softmax variants: a sliding window, and the KV cache."""

    def __init__(self, options: SoftmaxOptions, ctx: ModelContext) -> None:
        super().__init__(options, ctx)
        self.window = options.window

    def forward_cached(
        self, x: torch.Tensor, positional: Positional, cache: LayerCache
    ) -> torch.Tensor:
        """The KV cache protocol: x holds the new positions; cache.state the kept (k, v)."""
        B, T, C = x.shape
        offset = cache.offset
        q, k, v = self.new_heads(x, positional, offset)  # k, v: (B, nkv, T, hs)
        if cache.state is not None:
            k = torch.cat((cache.state[0], k), dim=2)
            v = torch.cat((cache.state[1], v), dim=2)
        L = k.size(2)  # kept earlier positions + the new ones
        # A later query sees at most window - 1 positions before it: keep no more.
        kept = L if self.window is None else min(L, self.window - 1)
        cache.state = (k[:, :, L - kept :], v[:, :, L - kept :])
        mask = None
        if T > 1 or self.window is not None:  # one new query without a window sees all
            mask = allowed_between(T, L, offset, self.window, x.device)
        bias = score_bias_at(positional, T, offset)
        if bias is not None:
            bias = bias[..., -L:].to(q.dtype)  # the columns of the keys still kept
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        y = F.scaled_dot_product_attention(
            q, self.repeat_kv(k), self.repeat_kv(v), attn_mask=mask
        )  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).contiguous().view(B, T, C))
