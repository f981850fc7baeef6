"""Talking-heads attention (Shazeer et al., 2020): heads mix their scores and weights.

Ordinary multi-head attention keeps its heads apart. Here a learned (heads x heads)
matrix mixes the heads' scores before the softmax, and another mixes their attention
weights after it. Both start as the identity, so training starts from ordinary
multi-head attention. Mixing happens between heads at one (query, key) pair, so a
query still sees no later key.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from tel_core.plugin import Attention, ModelContext, Positional, hookimpl, mark_residual_projection
from torch import nn


@attrs.frozen
class TalkingHeadsOptions:
    #: Mix the heads' scores before the softmax.
    mix_scores: bool = True
    #: Mix the heads' attention weights after the softmax.
    mix_weights: bool = True


class TalkingHeadsAttention(Attention):
    """Causal multi-head attention whose heads exchange scores and attention weights."""

    can_record = True  # it forms its attention weights anyway: probes may have them

    def __init__(self, options: TalkingHeadsOptions, ctx: ModelContext) -> None:
        super().__init__()
        self.n_heads = ctx.n_heads
        self.dropout = ctx.dropout
        self.qkv = nn.Linear(ctx.d_model, 3 * ctx.d_model, bias=ctx.bias)
        self.out = mark_residual_projection(nn.Linear(ctx.d_model, ctx.d_model, bias=ctx.bias))
        eye = torch.eye(ctx.n_heads)
        # Plain parameters, not nn.Linear: tel's GPT-2 initialisation leaves them alone.
        self.mix_scores = nn.Parameter(eye.clone()) if options.mix_scores else None
        self.mix_weights = nn.Parameter(eye.clone()) if options.mix_weights else None

    def forward(self, x: torch.Tensor, positional: Positional) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        q, k = positional.rotate(q, k)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)  # (B, nh, T, T)
        bias = positional.score_bias(T)
        if bias is not None:
            scores = scores + bias.to(scores.dtype)
        if self.mix_scores is not None:  # before the mask: mixing -inf would give nan
            scores = torch.einsum("bhij,hg->bgij", scores, self.mix_scores)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        if self.recording:  # tel_core.plugin.record_attention(model) is open
            self.record(weights)  # the softmax's: rows sum to one, as probes expect
        if self.mix_weights is not None:  # masked weights are 0 in every head: still causal
            weights = torch.einsum("bhij,hg->bgij", weights, self.mix_weights)
        weights = F.dropout(weights, self.dropout, self.training)
        y = (weights @ v).transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.out(y)


@hookimpl
def register_attention(register):
    register("talking_heads", TalkingHeadsAttention, options=TalkingHeadsOptions)
