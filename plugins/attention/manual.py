"""Softmax attention with its backward pass written by hand (for teaching).

Autograd would derive the backward pass of the eager maths by itself; here it is spelled
out in a ``torch.autograd.Function``, one line per step of the derivation, and the tests
check it against autograd with ``torch.autograd.gradcheck`` in float64. It is slower
than ``causal``, and meant to be read.

Forward, for one batch element and head (q, k, v: T x d; s = 1 / sqrt(d)):

    S = s * Q Kᵀ + B          scores, plus the positional score bias B (if any)
    S_ij = -inf where j may not be seen (the future; beyond the window)
    P = softmax(S)            row-wise: P_ij = exp(S_ij) / Σ_l exp(S_il)
    P' = P ⊙ M                attention dropout: M_ij is 0 or 1 / (1 - p)  (M = 1 if off)
    Y = P' V

Backward, given dY = ∂L/∂Y:

    dV = P'ᵀ dY               since Y = P' V is linear in V
    dP' = dY Vᵀ               ... and linear in P'
    dP = dP' ⊙ M
    dS_il = Σ_j dP_ij ∂P_ij/∂S_il, and ∂P_ij/∂S_il = P_ij (δ_jl - P_il), so
    dS_il = P_il (dP_il - Σ_j P_ij dP_ij)      (masked entries: P = 0, so dS = 0)
    dQ = s * dS K             since S = s * Q Kᵀ
    dK = s * dSᵀ Q
    dB = dS, summed over the dimensions along which B was broadcast
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tel_core.plugin import hookimpl
from tel_plugins.attention.multihead import SoftmaxHeads, SoftmaxOptions, allowed, check_heads

ManualOptions = SoftmaxOptions  # n_kv_heads, qk_norm, window


class SoftmaxAttention(torch.autograd.Function):
    """(q, k, v, bias, keep, dropout_mask) -> (y, probabilities), with a hand-written backward.

    q, k, v: (B, nh, T, hs); bias: None or broadcastable to (B, nh, T, T); keep: (T, T)
    bool, True where attending is allowed; dropout_mask: None or (B, nh, T, T).
    The probabilities are returned for recording only: no gradient flows through them.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        keep: torch.Tensor,
        dropout_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 / math.sqrt(q.size(-1))
        scores = scale * (q @ k.transpose(-2, -1))  # (B, nh, T, T)
        if bias is not None:
            scores = scores + bias
        scores = scores.masked_fill(~keep, float("-inf"))
        # subtract the row maximum first: the same softmax, without overflowing exp
        scores = scores - scores.amax(dim=-1, keepdim=True)
        exp = scores.exp()
        p = exp / exp.sum(dim=-1, keepdim=True)
        p_dropped = p if dropout_mask is None else p * dropout_mask
        y = p_dropped @ v  # (B, nh, T, hs)
        ctx.save_for_backward(q, k, v, p, dropout_mask)
        ctx.scale = scale
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.mark_non_differentiable(p)
        return y, p

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, _dp_recorded: torch.Tensor | None) -> tuple:
        q, k, v, p, dropout_mask = ctx.saved_tensors
        # Under CUDA autocast the forward's exp and sum ran in float32 (q, k, v and the
        # output in bf16/fp16): work in the wider of the two dtypes, and hand each input
        # its gradient in its own dtype.
        work = torch.promote_types(p.dtype, dy.dtype)
        dtypes = (q.dtype, k.dtype, v.dtype)
        q, k, v, p, dy = (t.to(work) for t in (q, k, v, p, dy))
        if dropout_mask is not None:
            dropout_mask = dropout_mask.to(work)
        p_dropped = p if dropout_mask is None else p * dropout_mask
        dv = p_dropped.transpose(-2, -1) @ dy  # (B, nh, T, hs)
        dp = dy @ v.transpose(-2, -1)  # (B, nh, T, T)
        if dropout_mask is not None:
            dp = dp * dropout_mask
        ds = p * (dp - (p * dp).sum(dim=-1, keepdim=True))  # the softmax's Jacobian
        dq = ctx.scale * (ds @ k)
        dk = ctx.scale * (ds.transpose(-2, -1) @ q)
        dbias = None
        if ctx.bias_shape is not None and ctx.needs_input_grad[3]:
            dbias = ds.sum_to_size(ctx.bias_shape).to(ctx.bias_dtype)  # undo the broadcast
        dq, dk, dv = (g.to(dtype) for g, dtype in zip((dq, dk, dv), dtypes, strict=True))
        return dq, dk, dv, dbias, None, None


class ManualAttention(SoftmaxHeads):
    """Causal softmax attention whose gradients come from a hand-written backward pass."""

    can_record = True

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        B, nh, T, _ = q.shape
        keep = allowed(T, self.window, q.device)
        if bias is not None:
            bias = bias.to(q.dtype)
        dropout_mask = None
        if self.training and self.dropout > 0:
            keep_p = 1.0 - self.dropout
            dropout_mask = torch.empty(B, nh, T, T, device=q.device, dtype=q.dtype)
            dropout_mask = dropout_mask.bernoulli_(keep_p) / keep_p
        y, probabilities = SoftmaxAttention.apply(q, k, v, bias, keep, dropout_mask)
        self.record(probabilities)
        return y


@hookimpl
def register_attention(register):
    register("manual", ManualAttention, options=ManualOptions, check=check_heads)
