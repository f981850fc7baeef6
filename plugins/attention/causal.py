"""Causal multi-head self-attention on torch's fused scaled_dot_product_attention."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from tel_core import hookimpl
from tel_core.interfaces import ModelContext
from tel_core.nn import Positional, mark_residual_projection


@attrs.frozen
class CausalOptions:
    pass


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (the fast path: scaled_dot_product_attention)."""

    def __init__(self, options: CausalOptions, ctx: ModelContext) -> None:
        super().__init__()
        self.n_heads = ctx.n_heads
        self.dropout = ctx.dropout
        self.qkv = nn.Linear(ctx.d_model, 3 * ctx.d_model, bias=ctx.bias)
        self.out = mark_residual_projection(nn.Linear(ctx.d_model, ctx.d_model, bias=ctx.bias))

    def forward(self, x: torch.Tensor, positional: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        q, k = positional.rotate(q, k)
        bias = positional.score_bias(T)
        dropout = self.dropout if self.training else 0.0
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            mask = bias.to(q.dtype).masked_fill(future, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.out(y)


@hookimpl
def register_attention(register):
    register("causal", CausalSelfAttention, options=CausalOptions)
