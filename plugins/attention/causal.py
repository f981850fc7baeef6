"""Causal multi-head self-attention on torch's fused scaled_dot_product_attention.

The fast path, and the default. Options: grouped-query and multi-query attention
(``n_kv_heads``), a sliding window (``window``) and QK-norm (``qk_norm``). The fused
kernel never forms the attention probabilities, so while someone records them
(``tel_core.plugin.record_attention``) it computes them the eager way instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tel_core.plugin import hookimpl
from tel_plugins.attention.eager import attention_probabilities
from tel_plugins.attention.multihead import SoftmaxHeads, SoftmaxOptions, allowed, check_heads

CausalOptions = SoftmaxOptions  # n_kv_heads, qk_norm, window


class CausalSelfAttention(SoftmaxHeads):
    """Multi-head causal self-attention (the fast path: scaled_dot_product_attention)."""

    can_record = True  # by switching to the eager maths while recording

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        if self.recording:
            probabilities = attention_probabilities(q, k, bias, self.window)
            self.record(probabilities)
            return F.dropout(probabilities, dropout) @ v
        if bias is None and self.window is None:  # the kernel builds the causal mask itself
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        T = q.size(-2)
        mask = allowed(T, self.window, q.device)  # (T, T) bool, True = may attend
        if bias is not None:  # a float mask: the bias where allowed, -inf elsewhere
            mask = bias.to(q.dtype).masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


@hookimpl
def register_attention(register):
    register("causal", CausalSelfAttention, options=CausalOptions, check=check_heads)
