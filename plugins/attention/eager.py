"""Causal self-attention written out: scores, mask, softmax, weighted sum.

The same mathematics as ``causal`` step by step, so every intermediate can be looked at;
it hands its probabilities to ``tel_core.plugin.record_attention``. It forms the (T, T)
score matrix in memory, which the fused kernel behind ``causal`` avoids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tel_core.plugin import hookimpl
from tel_plugins.attention.multihead import SoftmaxHeads, SoftmaxOptions, allowed, check_heads

EagerOptions = SoftmaxOptions  # n_kv_heads, qk_norm, window: the same options as causal


def attention_probabilities(
    q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, window: int | None = None
) -> torch.Tensor:
    """q, k (B, nh, T, hs) -> probabilities (B, nh, T, T); row i sums to 1 over j <= i."""
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    if bias is not None:
        scores = scores + bias  # e.g. ALiBi's distance penalty
    scores = scores.masked_fill(~allowed(T, window, q.device), float("-inf"))
    # softmax in float32: under bf16 the row sums would lose most of their precision
    return F.softmax(scores.float(), dim=-1).to(q.dtype)


class EagerAttention(SoftmaxHeads):
    """Multi-head causal attention in plain tensor operations; can record probabilities."""

    can_record = True

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        probabilities = attention_probabilities(q, k, bias, self.window)
        self.record(probabilities)
        # dropout on the probabilities, as SDPA does (after recording them)
        dropped = F.dropout(probabilities, self.dropout, self.training)
        return dropped @ v  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)


@hookimpl
def register_attention(register):
    register("eager", EagerAttention, options=EagerOptions, check=check_heads)
